//! Kernel memory from `/proc/slabinfo`: what a connection costs the kernel.
//!
//! `VmRSS` sees only the server's own pages. An idle connection also holds
//! kernel objects: the TCP socket, its inode and file, an epoll entry or an
//! io_uring request, and they differ between designs. The kernel allocates
//! them from slab caches, and `/proc/slabinfo` (readable by root only)
//! lists every cache's objects in use and their size. The runner reads it
//! before and after opening the connections; the growth divided by the
//! connections is the figure.
//!
//! What it counts, honestly: every cache on the machine. So it includes
//! **both ends of each loopback connection**, the load generator's socket as
//! well as the server's, and anything else the machine allocated meanwhile
//! (other processes, TIME_WAIT sockets of earlier runs expiring). With
//! 10,000 connections the connections dominate; the figure is for comparing
//! servers measured the same way, not the server's share alone.

use std::collections::BTreeMap;

/// How the figure was measured, as the data records it.
pub const METHOD: &str = "slab growth from /proc/slabinfo (active objects x object size, every \
     cache, machine-wide): counts both ends of each loopback connection, the load generator's \
     socket and the server's, and anything else the machine allocated meanwhile";

/// Bytes in use per cache, by name.
pub type Caches = BTreeMap<String, u64>;

/// Parses `/proc/slabinfo` (version 2.1): for each cache, `active_objs ×
/// objsize`, the bytes its objects in use take.
pub fn parse(text: &str) -> Caches {
    let mut caches = Caches::new();
    for line in text.lines() {
        if line.starts_with("slabinfo") || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| cols.get(i).and_then(|v| v.parse::<u64>().ok());
        if let (Some(name), Some(active), Some(size)) = (cols.first(), number(1), number(3)) {
            *caches.entry(name.to_string()).or_default() += active * size;
        }
    }
    caches
}

/// Reads the machine's slab caches, or says why it cannot.
pub fn read() -> Result<Caches, String> {
    let text = std::fs::read_to_string("/proc/slabinfo").map_err(|e| {
        format!("not measured, because /proc/slabinfo cannot be read ({e}); it needs root")
    })?;
    let caches = parse(&text);
    if caches.is_empty() {
        return Err("not measured, because /proc/slabinfo lists no caches".to_string());
    }
    Ok(caches)
}

/// The total, in KiB.
pub fn total_kib(caches: &Caches) -> u64 {
    caches.values().sum::<u64>() / 1024
}

/// The caches that grew most between `before` and `after`, in KiB, most
/// first, at most `n`.
pub fn growth(before: &Caches, after: &Caches, n: usize) -> Vec<(String, i64)> {
    let mut grown: Vec<(String, i64)> = after
        .iter()
        .map(|(name, &bytes)| {
            let was = before.get(name).copied().unwrap_or(0);
            (name.clone(), (bytes as i64 - was as i64) / 1024)
        })
        .filter(|(_, kib)| *kib > 0)
        .collect();
    grown.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    grown.truncate(n);
    grown
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
TCP                  100    120   2432   13    8 : tunables    0    0    0 : slabdata     10     10      0
kmalloc-64          2048   2048     64   64    1 : tunables    0    0    0 : slabdata     32     32      0
";

    #[test]
    fn bytes_in_use_are_active_objects_times_their_size() {
        let caches = parse(SAMPLE);
        assert_eq!(caches["TCP"], 243_200);
        assert_eq!(caches["kmalloc-64"], 131_072);
        assert_eq!(total_kib(&caches), (243_200 + 131_072) / 1024);
    }

    #[test]
    fn growth_names_the_caches_that_grew() {
        let before = parse(SAMPLE);
        let mut after = before.clone();
        *after.get_mut("TCP").unwrap() += 2432 * 1000;
        after.insert("sock_inode_cache".into(), 512 * 1024);
        *after.get_mut("kmalloc-64").unwrap() -= 64 * 100;
        let top = growth(&before, &after, 5);
        assert_eq!(
            top,
            [
                ("TCP".to_string(), 2375),
                ("sock_inode_cache".to_string(), 512)
            ]
        );
    }
}
