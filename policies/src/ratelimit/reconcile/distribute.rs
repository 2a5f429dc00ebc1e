//! How a node's grant for a key is split among its cores: the lease by each core's demand (a key
//! hot on one core is not starved by an even split), the node's part of the free capacity
//! evenly, the remainders to the busiest core.

use super::{GrantItem, Grants, Record};
use crate::ratelimit::store::SyncResult;

/// Splits the node's lease among the cores by demand and hands each its free share.
pub(super) fn distribute(
    rec: &mut Record,
    r: &SyncResult,
    workers: usize,
    grants: &mut [Option<Grants>],
    scratch: &mut Vec<i64>,
) {
    let lease = r.lease.max(0);
    // Only cores that hold the key can spend a share of it.
    let total: f64 = rec
        .cores
        .iter()
        .filter(|c| c.has_entry)
        .map(|c| c.demand)
        .sum();
    let n = rec.cores.len();
    scratch.clear();
    scratch.resize(2 * n, 0);
    let (targets, frees) = scratch.split_at_mut(n);
    if total > 0.0 && lease > 0 {
        let mut given = 0;
        let mut top = 0;
        let mut top_demand = -1.0;
        for (i, c) in rec.cores.iter().enumerate() {
            if !c.has_entry {
                continue;
            }
            targets[i] = (lease as f64 * c.demand / total).floor() as i64;
            given += targets[i];
            if c.demand > top_demand {
                top = i;
                top_demand = c.demand;
            }
        }
        targets[top] += lease - given;
    }
    // This node's part of the unleased capacity, rounded up (a key in demand on two nodes with
    // one free token must not starve both; an overdraft is billed as debt), split evenly among
    // the cores, the remainder to the busiest.
    let node_free = (r.free.max(0) + i64::from(r.nodes.max(1)) - 1) / i64::from(r.nodes.max(1));
    let w = workers.max(1) as i64;
    frees.fill(node_free / w);
    if let Some(top) = (0..rec.cores.len())
        .filter(|&i| rec.cores[i].has_entry)
        .max_by(|&a, &b| {
            rec.cores[a]
                .demand
                .partial_cmp(&rec.cores[b].demand)
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    {
        frees[top] += node_free - (node_free / w) * w;
    }
    for (i, c) in rec.cores.iter_mut().enumerate() {
        if !c.has_entry {
            continue;
        }
        let add = targets[i] - c.outstanding;
        c.outstanding = targets[i];
        c.free_given = frees[i];
        c.free_spent = 0;
        if let Some(g) = grants.get_mut(i) {
            g.get_or_insert_with(Grants::default).items.push(GrantItem {
                limit: rec.limit,
                local: rec.local,
                add,
                free: frees[i],
                remaining: r.free.max(0) + lease,
                reset_ms: r.reset_ms,
                retry_ms: r.retry_ms,
                expire: false,
            });
        }
    }
}
