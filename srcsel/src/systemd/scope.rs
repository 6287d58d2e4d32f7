//! Runs as transient scopes, through systemd's D-Bus API: under systemd a
//! run's command goes into `srcsel-run-<pid>.scope` in its assignment's
//! slice (inside `srcsel.slice`), created by systemd itself, so
//! `systemctl status`, `systemd-cgls` and `systemctl kill` see it and
//! systemd's rule (it alone makes cgroups outside delegated subtrees) holds.
use std::time::Duration;

use futures::StreamExt as _;
use zbus::zvariant::{OwnedObjectPath, Value};

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, Value<'_>)],
        aux: &[(&str, &[(&str, Value<'_>)])],
    ) -> zbus::Result<OwnedObjectPath>;

    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

/// How long a job may take: under emulation (the tests' VM) systemd is slow.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("asking systemd over D-Bus (is dbus running? `systemctl status dbus`): {0}")]
    Bus(#[from] zbus::Error),
    #[error("systemd's job for {unit} ended with \"{result}\" (see `journalctl -u {unit}`)")]
    Job { unit: String, result: String },
    #[error("systemd's job for {0} did not end within {JOB_TIMEOUT:?}")]
    Timeout(String),
}

/// Starts scope `name` in `slice` holding process `pid`, and waits until
/// systemd has moved it in.
pub async fn start(name: &str, slice: &str, pid: u32, description: &str) -> Result<(), ScopeError> {
    let props = [
        ("PIDs", Value::from(vec![pid])),
        ("Slice", Value::from(slice)),
        ("Description", Value::from(description)),
        // Gone from systemd once it ends, also when it failed.
        ("CollectMode", Value::from("inactive-or-failed")),
    ];
    job(name, |m| async move {
        m.start_transient_unit(name, "fail", &props, &[]).await
    })
    .await
}

/// Stops unit `name` (and what runs in it), waiting for it; a unit that
/// is not loaded is already stopped.
pub async fn stop(name: &str) -> Result<(), ScopeError> {
    let stopped = job(name, |m| async move { m.stop_unit(name, "replace").await }).await;
    match stopped {
        Err(ScopeError::Bus(zbus::Error::MethodError(e, _, _)))
            if e.as_str() == "org.freedesktop.systemd1.NoSuchUnit" =>
        {
            Ok(())
        }
        r => r,
    }
}

/// Runs `call`, which queues a job for `unit`, and waits for the job to end
/// (subscribed first, so its end can't be missed).
async fn job<F, Fut>(unit: &str, call: F) -> Result<(), ScopeError>
where
    F: FnOnce(ManagerProxy<'static>) -> Fut,
    Fut: Future<Output = zbus::Result<OwnedObjectPath>>,
{
    // All of it bounded: a hung bus or PID 1 must not hang a run or the daemon's client.
    let whole = async {
        let bus = zbus::Connection::system().await?;
        let manager = ManagerProxy::new(&bus).await?;
        let mut ended = manager.receive_job_removed().await?;
        let path = call(manager.clone()).await?;
        while let Some(signal) = ended.next().await {
            let args = signal.args()?;
            if args.job == path {
                return Ok(args.result);
            }
        }
        Err(zbus::Error::Failure("the bus connection closed".into()))
    };
    let result = tokio::time::timeout(JOB_TIMEOUT, whole)
        .await
        .map_err(|_| ScopeError::Timeout(unit.to_owned()))??;
    if result != "done" {
        return Err(ScopeError::Job {
            unit: unit.to_owned(),
            result,
        });
    }
    Ok(())
}
