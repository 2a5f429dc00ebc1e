//! Unit tests of the parts that need no Redis (the differential test against a real Redis is
//! `tools/tests/ratelimit_store.rs`).

use super::wire::hash_tag;
use super::*;

fn item(key: &str) -> SyncItem {
    SyncItem {
        key: key.into(),
        algo: Algo::TokenBucket {
            rate: 1.0,
            burst: 1.0,
        },
        spent: 0,
        provisional: 0,
        want: 0,
        demand: 0.0,
        epoch: 0,
        total: 0,
    }
}

#[test]
fn the_store_can_move_to_the_reconciler_thread() {
    fn send<T: Send>() {}
    send::<RedisStore>();
}

#[test]
fn credentials_stay_out_of_messages() {
    assert_eq!(redact("redis://u:p@h:1/0"), "redis://***@h:1/0");
    assert_eq!(redact("redis://h:1/"), "redis://h:1/");
}

#[test]
fn hash_tags_follow_the_cluster_rule() {
    assert_eq!(hash_tag("{rl:a}:x"), "rl:a");
    assert_eq!(hash_tag("plain"), "plain");
    assert_eq!(hash_tag("{}x"), "{}x");
    assert_eq!(hash_tag("a}b{c}d"), "c");
    assert_eq!(hash_tag("x{open"), "x{open");
}

#[test]
fn chunks_split_on_tag_changes_and_size() {
    let mut items: Vec<SyncItem> = (0..300).map(|i| item(&format!("{{a}}:{i}"))).collect();
    items.push(item("{b}:1"));
    items.push(item("{a}:1"));
    let mut ranges = Vec::new();
    chunk_ranges(&items, &mut ranges);
    assert_eq!(ranges, vec![(0, 256), (256, 300), (300, 301), (301, 302)]);
    chunk_ranges(&[], &mut ranges);
    assert!(ranges.is_empty());
}
