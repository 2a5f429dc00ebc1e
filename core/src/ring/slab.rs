//! The table of operations in flight: each submitted operation has a slot whose index is its
//! `user_data`, and the slot keeps what the kernel may still touch (a send's buffer) until the
//! operation's last completion, even when the future that asked for it is gone. A slot is freed
//! only after its last completion, so a stale completion can never reach a reused slot.

use std::collections::VecDeque;
use std::task::Waker;

/// A completion: result and flags.
#[derive(Clone, Copy, Debug)]
pub struct Cqe {
    /// Result (bytes, or a negated errno).
    pub result: i32,
    /// `IORING_CQE_F_*` flags.
    pub flags: u32,
}

/// Memory an operation shares with the kernel until its completion.
#[derive(Default)]
pub enum Keep {
    /// Nothing (the operation carries no pointer of ours).
    #[default]
    None,
    /// A byte buffer (a send's data).
    Bytes(Vec<u8>),
    /// A socket address (a connect's target).
    Addr(Box<socket2::SockAddr>),
}

/// What a slot holds.
pub(crate) enum Slot {
    /// Unused.
    Free,
    /// A one-shot operation.
    Single {
        waker: Option<Waker>,
        done: Option<Cqe>,
        /// Memory the kernel reads or writes until the completion.
        keep: Keep,
        /// Its future was dropped: free the slot (and `keep`) at the completion.
        orphan: bool,
    },
    /// A multishot operation: completions queue up until the owner takes them.
    Multi {
        waker: Option<Waker>,
        queue: VecDeque<Cqe>,
        /// The last completion (without `F_MORE`) arrived.
        ended: bool,
        /// Its owner was dropped: recycle what arrives, free the slot at the last completion.
        orphan: bool,
    },
}

/// The slots.
#[derive(Default)]
pub(crate) struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

impl Slab {
    /// Takes a free slot for `slot`; returns its index.
    pub fn insert(&mut self, slot: Slot) -> u32 {
        self.live += 1;
        if let Some(i) = self.free.pop() {
            self.slots[i as usize] = slot;
            return i;
        }
        self.slots.push(slot);
        (self.slots.len() - 1) as u32
    }

    /// The slot at `i`, if in use.
    pub fn get_mut(&mut self, i: u32) -> Option<&mut Slot> {
        self.slots
            .get_mut(i as usize)
            .filter(|s| !matches!(s, Slot::Free))
    }

    /// Frees slot `i`, returning what it held.
    pub fn remove(&mut self, i: u32) -> Slot {
        let Some(s) = self.slots.get_mut(i as usize) else {
            return Slot::Free;
        };
        let old = std::mem::replace(s, Slot::Free);
        if !matches!(old, Slot::Free) {
            self.live -= 1;
            self.free.push(i);
        }
        old
    }

    /// Slots in use (operations the kernel has not finished).
    pub fn live(&self) -> usize {
        self.live
    }
}
