//! Receiving datagrams in batches: one `recvmmsg(2)` call takes up to [`BATCH`] datagrams that
//! wait on the socket, so a burst costs one system call per batch rather than one per packet.
//! A small safe wrapper: the buffers and addresses live in [`Batch`], the kernel fills them, and
//! [`Batch::get`] hands out each datagram with its sender. Also the kernel's drop count for a
//! socket ([`kernel_drops`]).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams per system call.
pub const BATCH: usize = 32;

/// Receive buffers for [`BATCH`] datagrams of up to `size` bytes each. The buffers are zeroed
/// allocations the kernel writes into: pages no datagram reached are never touched, so 32 × 64 KiB
/// costs resident memory only for what arrives.
pub struct Batch {
    size: usize,
    bufs: Vec<u8>,
    lens: [usize; BATCH],
    addrs: Vec<libc::sockaddr_storage>,
    truncated: [bool; BATCH],
    count: usize,
}

impl Batch {
    pub fn new(size: usize) -> Batch {
        Batch {
            size,
            bufs: vec![0u8; size * BATCH],
            lens: [0; BATCH],
            // SAFETY: sockaddr_storage is plain data; all zeroes is a valid (AF_UNSPEC) value.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            truncated: [false; BATCH],
            count: 0,
        }
    }

    /// Waits for at least one datagram (as the socket's read timeout allows), then takes every
    /// one already queued, up to [`BATCH`]. Returns how many arrived.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.recv_with(socket, libc::MSG_WAITFORONE)
    }

    /// Takes the datagrams already queued, up to [`BATCH`], without waiting: `WouldBlock` when
    /// there are none.
    pub fn try_recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.recv_with(socket, libc::MSG_DONTWAIT)
    }

    fn recv_with(&mut self, socket: &UdpSocket, flags: libc::c_int) -> io::Result<usize> {
        self.count = 0;
        // SAFETY: zeroed iovec/mmsghdr arrays are valid; each entry is then pointed at this
        // batch's own buffer and address slot, which outlive the call and are not otherwise
        // borrowed during it; vlen never exceeds the arrays' length.
        let n = unsafe {
            let mut iov: [libc::iovec; BATCH] = std::mem::zeroed();
            let mut hdrs: [libc::mmsghdr; BATCH] = std::mem::zeroed();
            let base = self.bufs.as_mut_ptr();
            for k in 0..BATCH {
                iov[k].iov_base = base.add(k * self.size).cast();
                iov[k].iov_len = self.size;
                let h = &mut hdrs[k].msg_hdr;
                h.msg_name = (&mut self.addrs[k] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_iov = &mut iov[k];
                h.msg_iovlen = 1;
            }
            let r = libc::recvmmsg(
                socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            );
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            for (k, h) in hdrs.iter().enumerate().take(r as usize) {
                self.lens[k] = h.msg_len as usize;
                self.truncated[k] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            }
            r as usize
        };
        self.count = n;
        Ok(n)
    }

    /// Datagram `k` of the last [`Batch::recv`]: its bytes and sender, or `None` for the sender
    /// when the address family is not IP. A datagram longer than the buffer is cut (see
    /// [`Batch::truncated`]).
    pub fn get(&self, k: usize) -> (&[u8], Option<SocketAddr>) {
        assert!(k < self.count);
        let start = k * self.size;
        let len = self.lens[k].min(self.size);
        (&self.bufs[start..start + len], sockaddr(&self.addrs[k]))
    }

    /// Whether datagram `k` was longer than the buffer.
    pub fn truncated(&self, k: usize) -> bool {
        self.truncated[k]
    }
}

/// How many datagrams the kernel dropped on `socket` for want of buffer space (its receive
/// buffer was full): `SO_MEMINFO`'s drop count, the figure `/proc/net/udp` shows in its last
/// column. `None` when the kernel does not say.
pub fn kernel_drops(socket: &UdpSocket) -> Option<u64> {
    let mut info = [0u32; 9];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: getsockopt on a live socket into a buffer of `len` bytes, which it may shorten.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let at = libc::SK_MEMINFO_DROPS as usize;
    (r == 0 && len as usize >= (at + 1) * 4).then(|| u64::from(info[at]))
}

fn sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in; storage is larger and
            // suitably aligned for it.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_drops_counts_what_a_full_buffer_turned_away() {
        let rx = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        rx.set_recv_buffer_size(4096).unwrap();
        rx.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let rx: UdpSocket = rx.into();
        assert_eq!(kernel_drops(&rx), Some(0));
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Loopback delivers (or drops) within the send: far more than 8 KiB, nothing read.
        for _ in 0..500 {
            tx.send_to(&[0u8; 200], rx.local_addr().unwrap()).unwrap();
        }
        let dropped = kernel_drops(&rx).unwrap();
        assert!((400..500).contains(&dropped), "{dropped} dropped");
    }

    #[test]
    fn a_burst_comes_in_batches_with_its_senders() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..40u8 {
            tx.send_to(&[i; 3], rx.local_addr().unwrap()).unwrap();
        }
        let mut b = Batch::new(16);
        let mut got = Vec::new();
        while got.len() < 40 {
            let n = b.recv(&rx).unwrap();
            assert!((1..=BATCH).contains(&n));
            for k in 0..n {
                let (bytes, from) = b.get(k);
                assert_eq!(from, Some(tx.local_addr().unwrap()));
                assert!(!b.truncated(k));
                got.push(bytes.to_vec());
            }
        }
        let want: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 3]).collect();
        assert_eq!(got, want);
        // Nothing left: a try says so at once.
        let e = b.try_recv(&rx).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        tx.send_to(&[9], rx.local_addr().unwrap()).unwrap();
        rx.set_read_timeout(None).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let n = loop {
            match b.try_recv(&rx) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline);
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!((n, b.get(0).0), (1, &[9u8][..]));
    }

    #[test]
    fn a_datagram_longer_than_the_buffer_is_cut_and_says_so() {
        let rx = UdpSocket::bind("[::1]:0")
            .or_else(|_| UdpSocket::bind("127.0.0.1:0"))
            .unwrap();
        let to = rx.local_addr().unwrap();
        let tx = UdpSocket::bind(SocketAddr::new(to.ip(), 0)).unwrap();
        tx.send_to(&[7; 100], to).unwrap();
        let mut b = Batch::new(64);
        assert_eq!(b.recv(&rx).unwrap(), 1);
        assert_eq!(b.get(0).0, &[7; 64][..]);
        assert!(b.truncated(0));
        assert_eq!(b.get(0).1, Some(tx.local_addr().unwrap()));
    }
}
