//! The user and group database (NSS, through libc): names to ids for the
//! config's `[[allow]]` entries and for `srcsel run --user`.
use std::ffi::{CStr, CString};

/// A user as `getpwnam(3)` describes them.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

const BUF: usize = 16 * 1024;

fn text(p: *const libc::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libc filled a NUL-terminated string in our buffer.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A user by name, or by number when `who` is all digits (as chown takes it).
pub fn user(who: &str) -> Option<User> {
    let mut pw = std::mem::MaybeUninit::<libc::passwd>::zeroed();
    let mut buf = vec![0 as libc::c_char; BUF];
    let mut found = std::ptr::null_mut();
    let rc = if let Ok(uid) = who.parse::<u32>() {
        // SAFETY: buffers of the sizes given; `found` points into them.
        unsafe { libc::getpwuid_r(uid, pw.as_mut_ptr(), buf.as_mut_ptr(), BUF, &mut found) }
    } else {
        let name = CString::new(who).ok()?;
        // SAFETY: as above.
        unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                pw.as_mut_ptr(),
                buf.as_mut_ptr(),
                BUF,
                &mut found,
            )
        }
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: getpw*_r succeeded and filled `pw`.
    let pw = unsafe { pw.assume_init() };
    Some(User {
        name: text(pw.pw_name),
        uid: pw.pw_uid,
        gid: pw.pw_gid,
        home: text(pw.pw_dir),
        shell: text(pw.pw_shell),
    })
}

/// A user's id, by name or number (a number needs no passwd entry).
pub fn user_id(who: &str) -> Option<u32> {
    who.parse().ok().or_else(|| user(who).map(|u| u.uid))
}

/// A group's id, by name or number.
pub fn group_id(who: &str) -> Option<u32> {
    if let Ok(gid) = who.parse() {
        return Some(gid);
    }
    let name = CString::new(who).ok()?;
    let mut gr = std::mem::MaybeUninit::<libc::group>::zeroed();
    let mut buf = vec![0 as libc::c_char; BUF];
    let mut found = std::ptr::null_mut();
    // SAFETY: buffers of the sizes given.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            gr.as_mut_ptr(),
            buf.as_mut_ptr(),
            BUF,
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: filled by getgrnam_r.
    Some(unsafe { gr.assume_init() }.gr_gid)
}

/// A uid's name, for messages (the number when it has none).
pub fn name_of(uid: u32) -> String {
    user(&uid.to_string()).map_or_else(|| format!("uid {uid}"), |u| u.name)
}

/// Every group `user` is in (`initgroups(3)`'s list), its primary included.
pub fn groups_of(user: &User) -> Vec<u32> {
    let Ok(name) = CString::new(user.name.as_str()) else {
        return vec![user.gid];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut gids = vec![0 as libc::gid_t; n as usize];
        let before = n;
        // SAFETY: `gids` holds `n` entries; libc sets `n` to the count.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), user.gid, gids.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            gids.truncate(n as usize);
            return gids;
        }
        if n <= before {
            n = before * 2;
        }
    }
}
