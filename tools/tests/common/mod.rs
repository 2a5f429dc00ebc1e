//! WebSocket upstreams for the tunnel tests (`websocket.rs`, `websocket_drain.rs`): a loopback
//! listener with a thread per connection, and the echo loop both servers run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use tungstenite::{Message, WebSocket};

/// Close codes an upstream received (`None`: a close frame without a status).
pub type Closes = Arc<Mutex<Vec<Option<u16>>>>;

/// Listens on a fresh loopback port and runs `serve` on each connection in its own thread.
pub fn listen(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let serve = serve.clone();
            std::thread::spawn(move || serve(s));
        }
    });
    addr
}

/// Echoes every data message on `ws` until the peer goes. With `closes`, a close frame's status
/// is recorded there and ends the loop; without, close frames are read past like pings.
pub fn echo<S: Read + Write>(ws: &mut WebSocket<S>, closes: Option<&Closes>) {
    loop {
        match ws.read() {
            Ok(Message::Close(f)) if closes.is_some() => {
                if let Some(c) = closes {
                    c.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(f.map(|f| u16::from(f.code)));
                }
                let _ = ws.flush();
                return;
            }
            Ok(m) if m.is_text() || m.is_binary() => {
                if ws.send(m).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
