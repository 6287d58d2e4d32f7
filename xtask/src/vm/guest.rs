//! The two guests: the architecture of our users' hosts (amd64 servers, arm64
//! Raspberry Pis), each Debian 12 on Debian's own stock 6.1 kernel for it.
use crate::dist;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    Amd64,
    Arm64,
}

/// What differs between the guests: how qemu emulates the machine, and which
/// kernel and drivers the image holds.
pub struct Guest {
    pub arch: Arch,
    /// How the test binaries and the package are built for it.
    pub build: &'static dist::Arch,
    /// The Debian package with the qemu binary, and that binary.
    pub qemu_package: &'static str,
    pub qemu: &'static str,
    pub machine: &'static [&'static str],
    /// The serial console's device, where the kernel and the job write.
    pub console: &'static str,
    /// Debian's stock kernel for the architecture (6.1 in bookworm).
    pub kernel_package: &'static str,
    /// The initrd's modules: what finds / on virtio (ext4 asks for crc32c by
    /// name, so it is listed); 9p too, so the share could be mounted that early.
    pub initrd_modules: &'static str,
}

pub const AMD64: Guest = Guest {
    arch: Arch::Amd64,
    build: &dist::AMD64,
    qemu_package: "qemu-system-x86",
    qemu: "qemu-system-x86_64",
    machine: &["-machine", "q35,accel=tcg", "-cpu", "max"],
    console: "ttyS0",
    kernel_package: "linux-image-amd64",
    initrd_modules: "virtio_pci\nvirtio_blk\next4\ncrc32c_generic\n9p\n9pnet_virtio\n",
};

/// The `virt` board with a Cortex-A72, the Raspberry Pi 4's core. (`max`
/// would add pointer authentication and SVE, which TCG emulates slowly and
/// no Raspberry Pi has.)
pub const ARM64: Guest = Guest {
    arch: Arch::Arm64,
    build: &dist::ARM64,
    qemu_package: "qemu-system-arm",
    qemu: "qemu-system-aarch64",
    machine: &["-machine", "virt,accel=tcg", "-cpu", "cortex-a72"],
    console: "ttyAMA0",
    kernel_package: "linux-image-arm64",
    initrd_modules: "virtio_pci\nvirtio_mmio\nvirtio_blk\next4\ncrc32c_generic\n9p\n9pnet_virtio\n",
};

impl Arch {
    pub fn guest(self) -> &'static Guest {
        match self {
            Arch::Amd64 => &AMD64,
            Arch::Arm64 => &ARM64,
        }
    }
}

impl Guest {
    /// Where the image is cached: amd64's under its key alone (as before arm64 came).
    pub fn cache_name(&self, key: &str) -> String {
        match self.arch {
            Arch::Amd64 => key.to_owned(),
            Arch::Arm64 => format!("arm64-{key}"),
        }
    }

    /// Whether a cached image's folder name is this guest's.
    pub fn owns(&self, name: &str) -> bool {
        name.starts_with("arm64-") == (self.arch == Arch::Arm64)
    }
}
