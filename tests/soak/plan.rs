//! The soak's random clients: the generator that draws them, and the plan
//! each one follows.

use std::env;
use std::time::SystemTime;

// ANCHOR: rng
/// xorshift64* (Marsaglia, Vigna): three shifts and a multiply, plenty
/// random for choosing what a client does, and no new dependency. The same
/// seed gives the same choices, so a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 first: neighbouring seeds (1, 2, 3...) give unrelated
        // streams, and the state is never 0, where xorshift would stay.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// A message size from 1 B to 1 MiB, each power of two as likely as the
    /// next: as many 1-byte messages as 512 KiB ones, so both the path
    /// where one read holds many messages and the path where one message
    /// takes hundreds of reads and short writes are exercised every round.
    fn size(&mut self) -> u64 {
        let low = 1u64 << self.below(20);
        low + self.below(low)
    }
}

/// The seed when none is asked for. Fixed, so that every run draws the same
/// clients, CI's included: a failure seen once comes back by running the
/// test again. (7878 is the lessons' default port; any number would do.)
pub const DEFAULT_SEED: u64 = 7878;

/// The run's seed: [`DEFAULT_SEED`], or `ECHO_SOAK_SEED=N` to replay
/// another run or try other clients, or `ECHO_SOAK_SEED=random` for a new
/// one from the clock. Every run prints the seed it used.
pub fn seed() -> u64 {
    let asked = env::var("ECHO_SOAK_SEED").unwrap_or_default();
    match asked.trim() {
        "" => DEFAULT_SEED,
        "random" => SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(DEFAULT_SEED),
        number => number
            .parse()
            .unwrap_or_else(|_| panic!("ECHO_SOAK_SEED={asked:?}: a number, or `random`")),
    }
}
// ANCHOR_END: rng

// ANCHOR: plan
/// How a client's session ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Reads every echo, then closes (FIN).
    Close,
    /// Shuts down its write side after the last message (`SHUT_WR`), reads
    /// every echo, then wants the server's EOF.
    HalfClose,
    /// Reads part of the echoes, then aborts with a reset (RST) while the
    /// server may still be sending to it.
    ResetMidway,
    /// Connects, sends a little, and resets at once.
    ResetAtOnce,
}

/// What one client does, drawn from the seeded generator.
#[derive(Debug)]
pub struct Plan {
    /// The pattern stream its bytes come from.
    pub stream: u64,
    /// Message sizes, sent one after the other on one connection.
    pub messages: Vec<u64>,
    /// Per message: wait until everything before it has been echoed
    /// (lock-step), or send it straight after the previous one (pipelined).
    pub lock_step: Vec<bool>,
    /// Reads 4 KiB at a time through a small receive buffer, pausing
    /// between reads: the server's sends come up short and its queue for
    /// this client fills, while everyone else must still be served.
    pub slow: bool,
    pub ending: Ending,
    /// `ResetMidway`: how many echoed bytes to read before the reset.
    pub reset_after: u64,
}

impl Plan {
    pub fn draw(rng: &mut Rng, stream: u64) -> Plan {
        let count = 1 + rng.below(6) as usize;
        let messages: Vec<u64> = (0..count).map(|_| rng.size()).collect();
        let lock_step = (0..count).map(|_| rng.percent(50)).collect();
        let ending = match rng.below(100) {
            0..35 => Ending::Close,
            35..70 => Ending::HalfClose,
            70..90 => Ending::ResetMidway,
            _ => Ending::ResetAtOnce,
        };
        let total: u64 = messages.iter().sum();
        Plan {
            stream,
            reset_after: rng.below(total),
            slow: rng.percent(8),
            messages,
            lock_step,
            ending,
        }
    }

    pub fn total(&self) -> u64 {
        self.messages.iter().sum()
    }

    pub fn describe(&self) -> String {
        format!(
            "{} messages, {} B in all, {:?}{}{}",
            self.messages.len(),
            self.total(),
            self.ending,
            if self.ending == Ending::ResetMidway {
                format!(" after {} B", self.reset_after)
            } else {
                String::new()
            },
            if self.slow { ", slow reader" } else { "" }
        )
    }
}
// ANCHOR_END: plan
