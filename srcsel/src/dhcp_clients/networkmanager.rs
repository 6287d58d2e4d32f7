//! NetworkManager over D-Bus, only while it runs (a call to its name would
//! otherwise start it): the device of an interface name, and the
//! nameservers of its IPv4 and IPv6 configurations.
use std::{collections::HashMap, net::IpAddr};

use zbus::{
    Connection,
    proxy::CacheProperties,
    zvariant::{OwnedObjectPath, OwnedValue},
};

use super::TIMEOUT;
use crate::policy::dns::{Asked, DnsSource};

const NAME: &str = "org.freedesktop.NetworkManager";

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager",
    default_service = "org.freedesktop.NetworkManager",
    default_path = "/org/freedesktop/NetworkManager"
)]
trait Manager {
    fn get_device_by_ip_iface(&self, iface: &str) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.Device",
    default_service = "org.freedesktop.NetworkManager"
)]
trait Device {
    #[zbus(property)]
    fn ip4_config(&self) -> zbus::Result<OwnedObjectPath>;
    #[zbus(property)]
    fn ip6_config(&self) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.IP4Config",
    default_service = "org.freedesktop.NetworkManager"
)]
trait Ip4Config {
    /// `[{"address": "10.0.0.1"}, …]` (since 1.14).
    #[zbus(property)]
    fn nameserver_data(&self) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.IP6Config",
    default_service = "org.freedesktop.NetworkManager"
)]
trait Ip6Config {
    #[zbus(property)]
    fn nameservers(&self) -> zbus::Result<Vec<Vec<u8>>>;
}

/// Some(answer) when NetworkManager runs and has a device `iface`.
pub async fn ask(iface: &str) -> Option<Option<Asked>> {
    let answer = tokio::time::timeout(TIMEOUT, nameservers(iface)).await;
    match answer {
        Ok(Ok(found)) => found.map(|all| Asked::new(DnsSource::NetworkManager, all)),
        Ok(Err(e)) => {
            tracing::debug!("asking NetworkManager about {iface}: {e}");
            None
        }
        Err(_) => None,
    }
}

async fn nameservers(iface: &str) -> zbus::Result<Option<Vec<IpAddr>>> {
    let bus = Connection::system().await?;
    let dbus = zbus::fdo::DBusProxy::new(&bus).await?;
    if !dbus.name_has_owner(NAME.try_into()?).await? {
        return Ok(None);
    }
    let device = match ManagerProxy::new(&bus)
        .await?
        .get_device_by_ip_iface(iface)
        .await
    {
        Ok(path) => path,
        // org.freedesktop.NetworkManager.UnknownDevice: not NetworkManager's.
        Err(zbus::Error::MethodError(..)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let device: DeviceProxy = at(&bus, device).await?;
    let mut all = Vec::new();
    let ip4 = device.ip4_config().await?;
    if ip4.as_str() != "/" {
        let config: Ip4ConfigProxy = at(&bus, ip4).await?;
        for entry in config.nameserver_data().await? {
            let address = entry
                .get("address")
                .and_then(|v| String::try_from(v.clone()).ok());
            all.extend(address.and_then(|a| a.parse::<IpAddr>().ok()));
        }
    }
    let ip6 = device.ip6_config().await?;
    if ip6.as_str() != "/" {
        let config: Ip6ConfigProxy = at(&bus, ip6).await?;
        for bytes in config.nameservers().await? {
            if let Ok(b) = <[u8; 16]>::try_from(bytes) {
                all.push(IpAddr::from(b));
            }
        }
    }
    Ok(Some(all))
}

/// A proxy of NetworkManager's object at `path`, its properties read when
/// asked (no cache, so no subscription to their changes).
async fn at<'a, P>(bus: &Connection, path: OwnedObjectPath) -> zbus::Result<P>
where
    P: From<zbus::Proxy<'a>> + zbus::proxy::Defaults,
{
    zbus::proxy::Builder::<P>::new(bus)
        .path(path)?
        .cache_properties(CacheProperties::No)
        .build()
        .await
}
