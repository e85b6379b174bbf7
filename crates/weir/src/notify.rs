//! The sd_notify protocol (`man sd_notify`): under a systemd unit with `Type=notify`, Weir
//! says `READY=1` once every listener is bound, `RELOADING=1` (with `MONOTONIC_USEC`, as
//! `Type=notify-reload` requires) when a SIGHUP reload starts and `READY=1` again when it
//! ends, `STOPPING=1` when the drain starts, and a human `STATUS=` line each time. Outside
//! systemd (`NOTIFY_SOCKET` unset) every call is a no-op. A datagram that cannot be sent is
//! logged once and otherwise ignored: the supervisor's bookkeeping never stops traffic.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    warned: AtomicBool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace) and removes it
    /// from the environment, as `sd_notify(unset_environment=1)` does, so processes Weir
    /// might start never inherit it.
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET");
        std::env::remove_var("NOTIFY_SOCKET");
        let socket = target.and_then(|t| match open(&t) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET={t:?} cannot be used: {e}; not notifying systemd");
                None
            }
        });
        Self {
            socket,
            warned: AtomicBool::new(false),
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn reloading(&self) {
        let usec = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = u64::try_from(usec.tv_sec).unwrap_or(0) * 1_000_000
            + u64::try_from(usec.tv_nsec).unwrap_or(0) / 1_000;
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the config"
        ));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=draining connections");
    }

    fn send(&self, message: &str) {
        let Some((socket, addr)) = &self.socket else {
            return;
        };
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!("cannot notify systemd: {e}");
            }
        }
    }
}

fn open(
    target: &std::ffi::OsStr,
) -> std::io::Result<(UnixDatagram, std::os::unix::net::SocketAddr)> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    let bytes = target.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name)?,
        None if bytes.starts_with(b"/") => std::os::unix::net::SocketAddr::from_pathname(target)?,
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "neither an absolute path nor @abstract",
            ))
        }
    };
    Ok((UnixDatagram::unbound()?, addr))
}
