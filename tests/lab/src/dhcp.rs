//! Leases as our users get them: dnsmasq on a router's lan, dhcpcd on the
//! client, and the hotspot renumbering as a rebooted phone does. The client's
//! addresses come from real DHCP so srcsel is tested against real leases.
use std::{fs, process::Command, time::Duration};

use crate::{Lab, cmd::ip, inspect::wait_until};

impl Lab {
    /// (Re)starts the hotspot's DHCP server for `prefix`.0/24 with `router`.
    pub fn start_dnsmasq(&mut self, prefix: &str, router: &str) {
        self.start_dnsmasq_in("r2", prefix, router);
    }

    /// (Re)starts a DHCP server on router `role`'s lan for `prefix`.0/24.
    /// Authoritative, so a client rebooting with an old lease gets a NAK at once.
    pub fn start_dnsmasq_in(&mut self, role: &str, prefix: &str, router: &str) {
        let ns = self.ns(role);
        let leases = self.dir.join(format!("dnsmasq-{role}.leases"));
        let _ = fs::remove_file(&leases);
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &ns,
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
        ])
        .args([
            "--interface=lan",
            "--bind-dynamic",
            "--dhcp-authoritative",
            "--log-dhcp",
            "--log-facility=-",
        ])
        .arg(format!(
            "--dhcp-range={prefix}.100,{prefix}.150,255.255.255.0,10m"
        ))
        .arg(format!("--dhcp-option=option:router,{router}"))
        // The router as the resolver, as a phone's hotspot offers itself.
        .arg(format!("--dhcp-option=option:dns-server,{router}"))
        .arg(format!("--dhcp-leasefile={}", leases.display()))
        .arg("--pid-file=");
        self.spawn(&format!("dnsmasq-{role}"), &mut cmd);
    }

    /// Renumbers the hotspot as a rebooted phone would: new subnet and
    /// gateway, and a carrier bounce that makes the client's dhcpcd rebind.
    pub fn renumber_hotspot(&mut self, prefix: &str) {
        // dhcpcd must see the carrier go (a bounce quicker than it reads
        // its netlink events passes unnoticed, and it keeps the old lease).
        let lost = |lab: &Lab| lab.log("dhcpcd-usb0").matches("carrier lost").count();
        let before = lost(self);
        self.renumber_hotspot_with("dhcpcd", prefix, |lab| lost(lab) > before);
    }

    /// The same for any DHCP `client` on usb0: `noticed` says when it has
    /// seen the carrier go.
    pub fn renumber_hotspot_with(
        &mut self,
        client: &str,
        prefix: &str,
        noticed: impl Fn(&Lab) -> bool,
    ) {
        let (r2, router) = (self.ns("r2"), format!("{prefix}.1"));
        ip(&format!("-n {r2} addr flush dev lan"));
        ip(&format!("-n {r2} addr add {router}/24 dev lan"));
        self.start_dnsmasq(prefix, &router);
        ip(&format!("-n {r2} link set lan down"));
        wait_until(
            &format!("{client} to see usb0's carrier go"),
            // NetworkManager under TCG (the VM) can take several seconds.
            Duration::from_secs(30),
            || noticed(self),
        );
        ip(&format!("-n {r2} link set lan up"));
        wait_until("usb0's new lease", Duration::from_secs(30), || {
            self.addr_of("usb0").is_some_and(|a| a.starts_with(prefix))
                && self
                    .client_out("ip -4 route show dev usb0")
                    .contains(&format!("default via {router}"))
        });
    }

    /// dhcpcd as our users run it, in a private mount namespace so that
    /// parallel labs do not share /run/dhcpcd or /var/lib/dhcpcd (the rest of
    /// /run stays shared: hooks reach the daemon's socket there), and with
    /// no hooks, so it never touches the host's resolv.conf or hostname.
    pub(crate) fn start_dhcpcd(&mut self) {
        self.start_dhcpcd_on("usb0", "metric 3000", "/bin/true");
    }

    /// (Re)starts dhcpcd for `iface` with extra config lines and a hook script.
    pub fn start_dhcpcd_on(&mut self, iface: &str, extra: &str, hook: &str) {
        let conf = self.dir.join(format!("dhcpcd-{iface}.conf"));
        let text = format!(
            "interface {iface}\n{extra}\nipv4only\nnoipv6rs\nnoarp\nnohook resolv.conf hostname\n\
             option domain_name_servers\n"
        );
        fs::write(&conf, text).expect("dhcpcd.conf");
        let script = format!(
            "mkdir -p /run/dhcpcd && mount -t tmpfs tmpfs /run/dhcpcd && mount -t tmpfs tmpfs /var/lib/dhcpcd && \
             exec dhcpcd -f {} -c {hook} -B -4 {iface}",
            conf.display()
        );
        let netns = format!("--net=/run/netns/{}", self.ns("client"));
        let mut cmd = Command::new("nsenter");
        cmd.args([
            &netns,
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ]);
        self.spawn(&format!("dhcpcd-{iface}"), &mut cmd);
    }

    /// A dhcpcd hook that hands each lease to `srcsel lease`, as the
    /// packaged one does; its path.
    pub fn srcsel_hook(&self) -> String {
        let hook = self.dir.join("dhcpcd-hook");
        let text = format!(
            "#!/bin/sh\nexec {} lease \"$@\"\n",
            crate::quoted(&self.srcsel)
        );
        fs::write(&hook, text).expect("hook");
        fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod hook");
        hook.display().to_string()
    }

    pub fn wait_for_lease(&self) {
        wait_until(
            "usb0's DHCP lease and default route",
            Duration::from_secs(30),
            || {
                self.addr_of("usb0").is_some()
                    && self
                        .client_out("ip -4 route show dev usb0")
                        .contains("default via")
            },
        );
    }

    /// The first IPv4 address of a client interface.
    pub fn addr_of(&self, iface: &str) -> Option<String> {
        let out = self.client_out(&format!("ip -4 -o addr show dev {iface}"));
        let word = out.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
        Some(word.split('/').next()?.to_owned())
    }

    /// usb0's current DHCP address.
    pub fn usb0_addr(&self) -> String {
        self.addr_of("usb0").expect("usb0 has an address")
    }
}
