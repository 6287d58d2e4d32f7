//! Each uplink's DNS resolvers, as userspace learns them (DHCP hooks, router
//! advertisements, the config). In the namespace's maps now so that every
//! namespace has it before the programs that redirect queries to it do.
use aya_ebpf::{macros::map, maps::Array};
use srcsel_common::{MAX_UPLINKS, Resolvers};

#[map(name = "SRCSEL_DNS")]
static DNS: Array<Resolvers> = Array::pinned(MAX_UPLINKS, 0);
