#![no_std]
// The programs are in main.rs; this empty library lets srcsel's build.rs depend
// on the crate so that cargo rebuilds the object when its sources change.
