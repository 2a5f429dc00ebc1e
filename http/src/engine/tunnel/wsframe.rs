//! Where WebSocket frames begin in a tunnelled byte stream, and the close frame the gateway adds
//! between two of them when a drain ends.
//!
//! A tunnel copies bytes without parsing them, but a drain must not end a WebSocket by cutting
//! the connection: the peers would see an abnormal closure (1006) and could not tell a restart
//! from a crash. So each direction follows the frame headers (RFC 6455 §5.2: two bytes, an
//! extended length, a masking key) as the bytes pass, and knows when the next byte starts a frame;
//! there, and only there, a close frame with status 1001 (going away) can be put into the stream:
//! unmasked towards the client (the gateway is its server), masked with a fresh random key towards
//! the upstream (the gateway is its client, RFC 6455 §5.3).

/// Follows frame boundaries in one direction of a WebSocket stream.
#[derive(Debug, Clone)]
pub(crate) struct FrameTracker {
    /// Header bytes of the current frame read so far (0: the next byte starts a frame, unless
    /// payload is left).
    head: [u8; 14],
    have: usize,
    /// The current frame's header length, once its second byte is known.
    need: usize,
    /// Payload bytes of the current frame still to pass.
    payload_left: u64,
    /// A close frame passed in this direction.
    closed: bool,
}

impl Default for FrameTracker {
    fn default() -> Self {
        Self {
            head: [0; 14],
            have: 0,
            need: 2,
            payload_left: 0,
            closed: false,
        }
    }
}

impl FrameTracker {
    /// The next byte starts a frame.
    pub(crate) fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }

    /// A close frame has passed (the peers are closing on their own).
    pub(crate) fn closed(&self) -> bool {
        self.closed
    }

    /// Follows `bytes` through.
    pub(crate) fn advance(&mut self, bytes: &[u8]) {
        let mut pos = 0;
        while pos < bytes.len() {
            pos += self.step(&bytes[pos..]);
        }
    }

    /// Follows `bytes` up to the end of the frame in progress (nothing when at a boundary);
    /// returns how many it took.
    pub(crate) fn advance_to_boundary(&mut self, bytes: &[u8]) -> usize {
        let mut pos = 0;
        while pos < bytes.len() && !self.at_boundary() {
            pos += self.step(&bytes[pos..]);
        }
        pos
    }

    /// Takes payload in bulk, or one header byte; returns how many bytes it took (at least 1
    /// of a non-empty `bytes`).
    fn step(&mut self, bytes: &[u8]) -> usize {
        if self.payload_left > 0 {
            let n = usize::try_from(self.payload_left).map_or(bytes.len(), |l| l.min(bytes.len()));
            self.payload_left -= n as u64;
            return n;
        }
        self.head[self.have] = bytes[0];
        self.have += 1;
        if self.have == 2 {
            let ext = match self.head[1] & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
            self.need = 2 + ext + mask;
        }
        if self.have >= 2 && self.have == self.need {
            let len = match self.head[1] & 0x7f {
                126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                127 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.head[2..10]);
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            if self.head[0] & 0x0f == 0x8 {
                self.closed = true;
            }
            self.payload_left = len;
            self.have = 0;
            self.need = 2;
        }
        1
    }
}

/// A close frame with status 1001 (going away): as a server sends it (`mask` `None`), or masked
/// with `mask` as a client must.
pub(crate) fn going_away(mask: Option<[u8; 4]>) -> Vec<u8> {
    const STATUS: [u8; 2] = 1001u16.to_be_bytes();
    let mut f = vec![0x88];
    match mask {
        None => {
            f.push(STATUS.len() as u8);
            f.extend_from_slice(&STATUS);
        }
        Some(key) => {
            f.push(0x80 | STATUS.len() as u8);
            f.extend_from_slice(&key);
            f.extend(STATUS.iter().zip(key.iter()).map(|(b, k)| b ^ k));
        }
    }
    f
}

/// A fresh masking key (RFC 6455 §5.3: unpredictable).
pub(crate) fn mask_key() -> [u8; 4] {
    let mut key = [0u8; 4];
    if getrandom::fill(&mut key).is_err() {
        // No OS randomness: the clock's low bits still vary from frame to frame.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        key = t.to_le_bytes();
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a client sends it: FIN, `opcode`, masked `payload`.
    fn frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        let m = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n <= 0xffff => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn boundaries_are_found_across_any_split() {
        let mut stream = frame(1, b"hello", true);
        stream.extend(frame(2, &[7u8; 300], false));
        stream.extend(frame(2, &vec![9u8; 70_000], true));
        let ends = [11, 11 + 304, stream.len()];
        for split in [1, 2, 3, 5, 64, 1000, stream.len()] {
            let mut t = FrameTracker::default();
            let mut at = Vec::new();
            let mut pos = 0;
            while pos < stream.len() {
                let end = (pos + split).min(stream.len());
                for i in pos..end {
                    t.advance(&stream[i..=i]);
                    if t.at_boundary() {
                        at.push(i + 1);
                    }
                }
                pos = end;
            }
            assert_eq!(at, ends, "split {split}");
        }
    }

    #[test]
    fn advance_to_boundary_stops_at_the_end_of_the_frame() {
        let mut stream = frame(1, b"abc", false);
        stream.extend(frame(1, b"def", false));
        let mut t = FrameTracker::default();
        t.advance(&stream[..2]);
        assert_eq!(t.advance_to_boundary(&stream[2..]), 3);
        assert!(t.at_boundary());
        assert_eq!(t.advance_to_boundary(&stream[5..]), 0, "already at one");
    }

    #[test]
    fn a_passing_close_frame_is_seen() {
        let mut t = FrameTracker::default();
        t.advance(&frame(1, b"x", true));
        assert!(!t.closed());
        t.advance(&frame(8, &1000u16.to_be_bytes(), true));
        assert!(t.closed());
    }

    #[test]
    fn going_away_frames_are_well_formed() {
        assert_eq!(going_away(None), vec![0x88, 2, 0x03, 0xe9]);
        let m = going_away(Some([1, 2, 3, 4]));
        assert_eq!(m, vec![0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe9 ^ 2]);
        let mut t = FrameTracker::default();
        t.advance(&m);
        assert!(t.at_boundary() && t.closed());
    }
}
