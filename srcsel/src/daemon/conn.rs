//! One client connection: who it is (the socket's credentials, taken at
//! connect), one request read under a size and time limit, checked against
//! that sender, answered. A run's connection then stays open until its
//! `End`, or until the caller is gone.
use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use tokio::{
    net::{UnixStream, unix::OwnedReadHalf},
    time::timeout,
};
use tracing::{debug, info};

use super::Daemon;
use crate::{
    api::{
        ErrorKind, MAX_REQUEST, Message, Reply, Request, VERSION,
        frame::{self, FrameError},
    },
    kernel::{peer, users},
    policy::{
        access::{self, Caller},
        plan::HookReport,
    },
    status,
};

/// Time a client has to send its request, and to take the reply.
const REQUEST_TIME: Duration = Duration::from_secs(5);

/// Serves one accepted connection to its end: who is asking, one request
/// read under its limits, then the answer (a run's connection stays open
/// until its `End`).
pub async fn serve(d: Arc<Daemon>, stream: UnixStream) {
    let Some((cred, gids)) = identify(&stream) else {
        return;
    };
    let privileged = access::privileged(cred.uid, d.uid);
    let who = format!("client pid {} uid {}", cred.pid, cred.uid);
    let (mut r, mut w) = stream.into_split();
    let mut slot = match d.conns.admit(cred.uid, privileged) {
        Ok(slot) => slot,
        Err(why) => {
            d.conns.complain(&format!("{who}: refused: {why}"));
            let _ = send(&mut w, &Reply::error(ErrorKind::Busy, why)).await;
            return;
        }
    };
    let request = match read_request(&mut r).await {
        Ok(Some(request)) => request,
        // A probe (`srcsel down` asking for the daemon's pid) sends nothing.
        Ok(None) => return,
        Err(why) => {
            d.conns.complain(&format!("{who}: {why}; closed"));
            let _ = send(&mut w, &Reply::error(ErrorKind::BadRequest, why)).await;
            return;
        }
    };
    debug!("{who}: {request:?}");
    let caller = caller(&cred, gids);
    let answer = match request {
        Request::Run { via, mode, pid } => {
            match d
                .start_run(&caller, privileged, cred.pid, &via, mode, pid)
                .await
            {
                Ok((run, started)) => {
                    let sent = send(&mut w, &started).await;
                    slot.done();
                    let ended = sent.is_ok() && wait_for_end(&mut r).await;
                    d.end_run(run, ended).await;
                    if ended {
                        let _ = send(&mut w, &Reply::Ok).await;
                    }
                    // After the reply: the caller does not wait for it.
                    let _ = tokio::task::spawn_blocking(move || d.remove_leftovers()).await;
                    return;
                }
                Err(e) => e,
            }
        }
        request => answer(&d, &caller, privileged, request).await,
    };
    if let Reply::Error { message, .. } = &answer {
        d.conns.complain(&format!("{who}: {message}"));
    }
    let _ = send(&mut w, &answer).await;
}

/// The peer's credentials (taken at connect) and every group it is in;
/// None when the kernel would not say.
fn identify(stream: &UnixStream) -> Option<(peer::Credentials, Vec<u32>)> {
    let (cred, mut gids) = (peer::credentials(stream).ok()?, peer::groups(stream).ok()?);
    gids.push(cred.gid);
    Some((cred, gids))
}

/// Who that is: named only once a request came (no user database lookup
/// for a probe, nor for root, on every run's path).
fn caller(cred: &peer::Credentials, gids: Vec<u32>) -> Caller {
    Caller {
        uid: cred.uid,
        gids,
        name: if cred.uid == 0 {
            "root".into()
        } else {
            users::name_of(cred.uid)
        },
    }
}

/// One request, within the size and time limits: None when the client
/// closed without sending one, Err with why it is refused.
async fn read_request(r: &mut OwnedReadHalf) -> Result<Option<Request>, String> {
    match timeout(REQUEST_TIME, frame::read_async(r, MAX_REQUEST)).await {
        Ok(Err(FrameError::Closed)) => Ok(None),
        Err(_) => Err(format!(
            "no complete request within {} s",
            REQUEST_TIME.as_secs()
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(bytes)) => decode(&bytes).map(Some),
    }
}

/// What only root (or the daemon's own uid) may ask; runs and status are
/// judged against `[[allow]]` instead.
fn root_only(request: &Request) -> Option<&'static str> {
    match request {
        Request::Lease { .. } => Some("report leases"),
        Request::Reload => Some("reload the config"),
        Request::Status | Request::End | Request::Run { .. } => None,
    }
}

/// The answer to every request but a run.
async fn answer(d: &Daemon, caller: &Caller, privileged: bool, request: Request) -> Reply {
    if let Some(what) = root_only(&request).filter(|_| !privileged) {
        return Reply::error(
            ErrorKind::Refused,
            format!("only root may {what} (you are {})", caller.name),
        );
    }
    match request {
        Request::Status if privileged || d.may_read_status(caller) => {
            // Reading the maps takes the namespace's flock, which a pass
            // holds across awaits: blocking on it here would stall this
            // single-threaded runtime with the pass inside it.
            let _pass = d.passes.lock().await;
            let at = status::Places {
                cookie: d.cookie,
                bpffs: Some(d.bpffs.clone()),
                cg_root: d.cg_root.as_ref().ok().cloned(),
            };
            match status::collect(true, &d.config(), &at, &d.handle).await {
                Ok(mut report) => {
                    d.health.report(&mut report.uplinks);
                    report.reset = Some(d.reset.to_string());
                    Reply::Status(Box::new(report))
                }
                Err(e) => Reply::error(ErrorKind::Failed, format!("{e:#}")),
            }
        }
        Request::Status => Reply::error(ErrorKind::Refused, d.status_refusal(caller)),
        Request::Lease {
            interface,
            gateway,
            dns,
        } => {
            let gw = gateway.map_or("none".into(), |g| g.to_string());
            info!("lease hook: {interface} gateway {gw} dns {dns:?}");
            let report = HookReport {
                interface,
                gateway,
                dns,
            };
            d.reconcile("lease hook", Some(&report)).await;
            Reply::Ok
        }
        Request::Reload => match d.reload().await {
            Ok(problems) => Reply::Reloaded {
                config: d.config().path.clone(),
                problems,
            },
            Err(e) => Reply::error(ErrorKind::Failed, e),
        },
        Request::End | Request::Run { .. } => {
            Reply::error(ErrorKind::BadRequest, "End without a run")
        }
    }
}

/// Whether the run's client says `End` (false: it closed, died or sent
/// something else). No time limit: the command runs as long as it runs.
async fn wait_for_end(r: &mut OwnedReadHalf) -> bool {
    let Ok(bytes) = frame::read_async(r, MAX_REQUEST).await else {
        return false;
    };
    matches!(decode(&bytes), Ok(Request::End))
}

async fn send(w: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) -> Result<(), ()> {
    let msg = Message {
        version: VERSION,
        body: reply,
    };
    match timeout(REQUEST_TIME, frame::write_async(w, &msg)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// A request of this version, or why not (naming the side to restart when
/// the versions differ).
fn decode(bytes: &[u8]) -> Result<Request, String> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    match serde_json::from_slice::<Message<Request>>(bytes) {
        Ok(m) if m.version == VERSION => Ok(m.body),
        _ => match serde_json::from_slice::<Version>(bytes) {
            Ok(v) if v.version != VERSION => Err(format!(
                "the client speaks API version {}, this daemon {VERSION}: restart the daemon \
                 after an upgrade (`systemctl restart srcsel`)",
                v.version
            )),
            _ => {
                let shown: String = String::from_utf8_lossy(bytes).chars().take(80).collect();
                Err(format!("malformed request {shown:?}"))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_of_another_version_name_the_daemon_to_restart() {
        assert_eq!(
            decode(br#"{"version":1,"body":"status"}"#),
            Ok(Request::Status)
        );
        let e = decode(br#"{"version":2,"body":"frobnicate"}"#).unwrap_err();
        assert!(e.contains("version 2") && e.contains("restart"), "{e}");
        let e = decode(&[b'x'; 300]).unwrap_err();
        assert!(e.starts_with("malformed request") && e.len() < 120, "{e}");
    }

    #[test]
    fn leases_and_reloads_are_roots_alone() {
        let lease = Request::Lease {
            interface: "usb0".into(),
            gateway: None,
            dns: Vec::new(),
        };
        assert_eq!(root_only(&lease), Some("report leases"));
        assert_eq!(root_only(&Request::Reload), Some("reload the config"));
        assert_eq!(root_only(&Request::Status), None, "judged by [[allow]]");
    }
}
