//! The client side of a gateway session: framed reads and buffered writes over TCP or TLS.

use bytes::{Bytes, BytesMut};
use strata_wire::codec::{put_packet, take_frame, Assembler, Frame};
use strata_wire::packets::{ErrPacket, OkPacket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

/// Writes are flushed once this much is buffered.
const FLUSH_AT: usize = 64 * 1024;

pub struct ClientConn {
    pub io: Box<dyn ClientIo>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    asm: Assembler,
    /// Capabilities the client negotiated.
    pub caps: u32,
    /// The sequence number the next packet we send must carry.
    pub seq: u8,
    /// The character set the client logged in with.
    pub charset: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("client protocol: {0}")]
    Wire(#[from] strata_wire::WireError),
}

impl ClientConn {
    pub fn new(io: Box<dyn ClientIo>, max_packet: usize) -> ClientConn {
        ClientConn {
            io,
            // Small at first: an idle connection should cost little; buffers grow with use.
            rbuf: BytesMut::with_capacity(512),
            wbuf: BytesMut::with_capacity(512),
            asm: Assembler::new(max_packet),
            caps: 0,
            seq: 0,
            charset: 45,
        }
    }

    /// A connection whose first bytes were already read.
    pub fn with_buffered(
        io: Box<dyn ClientIo>,
        max_packet: usize,
        buffered: BytesMut,
    ) -> ClientConn {
        let mut c = ClientConn::new(io, max_packet);
        c.rbuf = buffered;
        c
    }

    async fn frame(&mut self) -> Result<Option<Frame>, ClientError> {
        loop {
            if let Some(f) = take_frame(&mut self.rbuf) {
                return Ok(Some(f));
            }
            let n = self.io.read_buf(&mut self.rbuf).await?;
            if n == 0 {
                return Ok(None);
            }
        }
    }

    /// Reads whatever the client sends next into the buffer (0: it hung up). Stops reading once a
    /// lot is buffered, so a client cannot make the gateway hold unbounded input.
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        if self.rbuf.len() > 16 << 20 {
            return std::future::pending().await;
        }
        self.io.read_buf(&mut self.rbuf).await
    }

    /// The next whole packet: (sequence of its last frame, payload). `None` when the client hung up.
    pub async fn read_packet(&mut self) -> Result<Option<(u8, Bytes)>, ClientError> {
        loop {
            let Some(f) = self.frame().await? else {
                return Ok(None);
            };
            match self.asm.push(&f) {
                Ok(Some((_, last, payload))) => {
                    self.seq = last.wrapping_add(1);
                    return Ok(Some((last, payload)));
                }
                Ok(None) => {}
                Err(e) => {
                    // The answer follows the packet's last frame.
                    self.seq = f.seq.wrapping_add(1);
                    return Err(e.into());
                }
            }
        }
    }

    /// Queues a packet with the next sequence number.
    pub fn queue(&mut self, payload: &[u8]) {
        put_packet(&mut self.wbuf, &mut self.seq, payload);
    }

    /// Queues a frame exactly as the backend sent it, with its sequence number rewritten to ours.
    pub fn queue_frame(&mut self, raw: &[u8]) {
        let start = self.wbuf.len();
        self.wbuf.extend_from_slice(raw);
        self.wbuf[start + 3] = self.seq;
        self.seq = self.seq.wrapping_add(1);
    }

    pub fn buffered(&self) -> usize {
        self.wbuf.len()
    }

    pub fn should_flush(&self) -> bool {
        self.wbuf.len() >= FLUSH_AT
    }

    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.wbuf.is_empty() {
            self.io.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        self.io.flush().await?;
        Ok(())
    }

    pub fn queue_ok(&mut self, ok: &OkPacket) {
        let p = ok.encode(self.caps);
        self.queue(&p);
    }

    pub fn queue_err(&mut self, e: &ErrPacket) {
        self.queue(&e.encode());
    }

    /// Sends an error and flushes it.
    pub async fn send_err(&mut self, e: &ErrPacket) -> Result<(), ClientError> {
        self.queue_err(e);
        self.flush().await
    }
}
