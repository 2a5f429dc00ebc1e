//! What a cache hit's lookup costs per core (the store ringgate keeps on each worker) against a
//! store shared by the cores behind a lock, the simplest shared design (a concurrent cache crate
//! shards the lock, but every hit still takes one and bumps a shared reference count).
//!
//! `cargo run --release -p ringgate-cache --example sharing` prints nanoseconds per hit for:
//! the per-core store on one thread; the shared store on one thread (uncontended lock); and the
//! shared store with two threads hitting it at once (on this 2-core host, both cores), where the
//! lock's cache line and the objects' reference counts move between cores on every hit.

use ringgate_cache::freshness::Freshness;
use ringgate_cache::store::{Object, Store};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const KEYS: usize = 1000;
const HITS: usize = 4_000_000;

fn key(i: usize) -> Vec<u8> {
    format!("api.example.com/products/{i}?page=1\n#route=products\n#scheme=http").into_bytes()
}

fn object() -> Object {
    Object {
        status: 200,
        fields: b"content-type: application/json\r\n"
            .to_vec()
            .into_boxed_slice(),
        body: vec![b'x'; 1024].into(),
        etag: None,
        last_modified: None,
        vary: Box::new([]),
        tags: Box::new([]),
        fresh: Freshness {
            lifetime: Duration::from_secs(600),
            initial_age: Duration::ZERO,
            while_revalidate: Duration::ZERO,
            if_error: Duration::ZERO,
            no_cache: false,
            must_revalidate: false,
            validatable: false,
        },
        stored_at: Instant::now(),
    }
}

fn per_core() -> f64 {
    let mut s = Store::new(64 << 20);
    let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
    for k in &keys {
        s.insert(k, object());
    }
    let t0 = Instant::now();
    let mut n = 0usize;
    for i in 0..HITS {
        let o: Option<Rc<Object>> = s.get(&keys[i % KEYS], |_| None);
        n += o.map_or(0, |o| o.body.len());
    }
    let ns = t0.elapsed().as_nanos() as f64 / HITS as f64;
    assert!(n > 0);
    ns
}

type Shared = Arc<Mutex<HashMap<Vec<u8>, Arc<Vec<u8>>>>>;

fn shared_run(map: &Shared, keys: &[Vec<u8>]) -> f64 {
    let t0 = Instant::now();
    let mut n = 0usize;
    for i in 0..HITS {
        let hit = map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&keys[i % KEYS])
            .cloned();
        n += hit.map_or(0, |b| b.len());
    }
    assert!(n > 0);
    t0.elapsed().as_nanos() as f64 / HITS as f64
}

fn shared(threads: usize) -> f64 {
    let map: Shared = Arc::default();
    let keys: Arc<Vec<Vec<u8>>> = Arc::new((0..KEYS).map(key).collect());
    for k in keys.iter() {
        map.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k.clone(), Arc::new(vec![b'x'; 1024]));
    }
    let start = Arc::new(Barrier::new(threads));
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (map, keys, start) = (map.clone(), keys.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                shared_run(&map, &keys)
            })
        })
        .collect();
    let per: Vec<f64> = hs
        .into_iter()
        .map(|h| h.join().unwrap_or(f64::NAN))
        .collect();
    per.iter().sum::<f64>() / per.len() as f64
}

fn main() {
    for round in 1..=5 {
        println!(
            "round {round}: per-core store {:.1} ns/hit; shared store, 1 thread {:.1} ns/hit; shared store, 2 threads at once {:.1} ns/hit",
            per_core(),
            shared(1),
            shared(2)
        );
    }
}
