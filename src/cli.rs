//! Options that mean the same in every lesson.
//!
//! Each lesson defines its own `clap` struct and flattens [`CommonArgs`] into it,
//! so `--addr` is spelled, defaulted and documented the same everywhere.

use std::net::{SocketAddr, ToSocketAddrs};

/// Where every server listens unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7878";

/// The options every server has.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Address to listen on: `127.0.0.1:7878`, `[::1]:7878`, `0.0.0.0:7878`,
    /// or `localhost:7878`. Port 0 lets the kernel pick a free port; the
    /// server prints the one it got as its first line.
    #[arg(long, default_value = DEFAULT_ADDR, value_parser = parse_addr)]
    pub addr: SocketAddr,
}

/// Parses `host:port` into one socket address, resolving a name such as
/// `localhost` to its first address.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let mut addrs = text.to_socket_addrs().map_err(|e| {
        format!("`{text}` is not an address like 127.0.0.1:7878 or [::1]:7878 ({e})")
    })?;
    addrs
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_v6_and_names() {
        assert_eq!(
            parse_addr("127.0.0.1:7878").unwrap(),
            "127.0.0.1:7878".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]:0").unwrap(), "[::1]:0".parse().unwrap());
        assert_eq!(parse_addr("localhost:9").unwrap().port(), 9);
        assert!(parse_addr("127.0.0.1").is_err(), "a port is required");
        assert!(parse_addr("not an address").is_err());
    }
}
