//! System shared memory (Triton's `system_shared_memory` extension): clients put
//! tensors in a POSIX shared-memory object, register a window of it under a name,
//! and then name that window in requests instead of sending the bytes.
//!
//! One [`SharedMemoryRegistry`] belongs to the server and is shared by the HTTP
//! and gRPC endpoints (it is `Send + Sync`; every method takes `&self`):
//!
//! - [`register`](SharedMemoryRegistry::register)`(name, key, offset, byte_size)`
//!   opens the object `key` (`shm_open`, e.g. `"/my_region"`) and maps
//!   `byte_size` bytes from `offset`. Errors: the name is taken (AlreadyExists),
//!   no object has that key (Internal, as Triton), the window does not lie inside
//!   the object or `byte_size` is 0 (InvalidArg).
//! - [`status`](SharedMemoryRegistry::status)`(Some(name) | None)`: one region
//!   (NotFound if unknown) or all of them, sorted by name, as [`RegionStatus`].
//! - [`unregister`](SharedMemoryRegistry::unregister)`(Some(name) | None)`: one
//!   region or all; an unknown name is not an error (as Triton). A request still
//!   using the region keeps its mapping alive until it finishes.
//! - [`read`](SharedMemoryRegistry::read)`(name, offset, byte_size)`: copies input
//!   bytes out of a region; [`write`](SharedMemoryRegistry::write)`(name, offset,
//!   byte_size, data)`: copies output bytes into one, `data` at most `byte_size`
//!   long. `offset` is relative to the registered window. Unknown regions are
//!   NotFound; windows past the registered size are InvalidArg, with Triton's texts.
//!
//! The client may shrink the object after registering it; touching mapped pages
//! past its end would kill the server with SIGBUS, so every access first checks
//! the object's current size (`fstat`) and refuses with an error instead.

use crate::error::{ErrorKind, Result, ServerError};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, RwLock};

/// What status reports about one registered region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionStatus {
    pub name: String,
    pub key: String,
    pub offset: u64,
    pub byte_size: u64,
}

/// One registered window of a shared-memory object, mapped read-write.
struct MappedRegion {
    status: RegionStatus,
    /// Kept open to check the object's size before each access.
    fd: OwnedFd,
    /// Start of the mapping, which begins at `offset` rounded down to a page.
    base: *mut u8,
    /// Bytes from `base` to the first byte of the window.
    lead: usize,
    /// Length of the whole mapping (`lead + byte_size`).
    mapped_len: usize,
}

// The mapping is plain memory shared with another process; the registry only
// copies bytes in and out of it, and unmaps it once no request holds it.
unsafe impl Send for MappedRegion {}
unsafe impl Sync for MappedRegion {}

impl Drop for MappedRegion {
    fn drop(&mut self) {
        // SAFETY: `base`/`mapped_len` come from a successful mmap, unmapped once.
        unsafe {
            libc::munmap(self.base.cast(), self.mapped_len);
        }
    }
}

fn os_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

/// The current size of the object behind `fd`.
fn object_size(fd: &OwnedFd) -> std::io::Result<u64> {
    // SAFETY: fstat writes into the zeroed struct we pass; the fd is open.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } == -1 {
        return Err(os_error());
    }
    Ok(stat.st_size.max(0) as u64)
}

impl MappedRegion {
    fn open(name: &str, key: &str, offset: u64, byte_size: u64) -> Result<MappedRegion> {
        let invalid =
            |why: String| ServerError::invalid(format!("failed to register shared memory region '{name}': {why}"));
        if byte_size == 0 {
            return Err(invalid("byte_size must be greater than 0".into()));
        }
        let c_key = CString::new(key).map_err(|_| invalid(format!("key '{}' holds a NUL byte", key.escape_debug())))?;
        // SAFETY: a valid C string; the returned fd is owned below.
        let raw = unsafe { libc::shm_open(c_key.as_ptr(), libc::O_RDWR, 0) };
        if raw == -1 {
            let e = os_error();
            return Err(ServerError::internal(format!("Unable to open shared memory region: '{key}' ({e})")));
        }
        // SAFETY: shm_open returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = object_size(&fd)
            .map_err(|e| ServerError::internal(format!("Invalid shared memory region: '{key}' ({e})")))?;
        let end = offset.checked_add(byte_size).filter(|&end| end <= size).ok_or_else(|| {
            invalid(format!(
                "offset {offset} + byte_size {byte_size} lies outside shared memory object '{key}' of {size} bytes"
            ))
        })?;
        let page = page_size() as u64;
        let map_start = offset - offset % page;
        let lead = (offset - map_start) as usize;
        let mapped_len = usize::try_from(end - map_start)
            .map_err(|_| invalid(format!("byte_size {byte_size} does not fit this machine's address space")))?;
        let map_offset = libc::off_t::try_from(map_start)
            .map_err(|_| invalid(format!("offset {offset} is too large for this machine")))?;
        // SAFETY: mapping a checked range of an open descriptor; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                map_offset,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(invalid(format!("mmap failed: {}", os_error())));
        }
        Ok(MappedRegion {
            status: RegionStatus { name: name.to_string(), key: key.to_string(), offset, byte_size },
            fd,
            base: base.cast(),
            lead,
            mapped_len,
        })
    }

    /// Checks that `[offset, offset + len)` of the window is inside the registered
    /// window and still backed by the object; returns it as a range of `base`.
    fn window(&self, offset: u64, len: u64) -> Result<std::ops::Range<usize>> {
        let name = &self.status.name;
        if offset >= self.status.byte_size {
            return Err(ServerError::invalid(format!("Invalid offset for shared memory region: '{name}'")));
        }
        let end = offset.checked_add(len).filter(|&end| end <= self.status.byte_size).ok_or_else(|| {
            ServerError::invalid(format!("Invalid offset + byte size for shared memory region: '{name}'"))
        })?;
        let object_end = self.status.offset + end;
        let size = object_size(&self.fd)
            .map_err(|e| ServerError::internal(format!("shared memory region '{name}' cannot be read: {e}")))?;
        if object_end > size {
            return Err(ServerError::invalid(format!(
                "shared memory region '{name}': its object '{}' shrank to {size} bytes, short of the {object_end} \
                 this request needs",
                self.status.key
            )));
        }
        Ok(self.lead + offset as usize..self.lead + end as usize)
    }
}

/// The server's registered system shared-memory regions, by name.
#[derive(Default)]
pub struct SharedMemoryRegistry {
    regions: RwLock<BTreeMap<String, Arc<MappedRegion>>>,
}

impl SharedMemoryRegistry {
    pub fn new() -> SharedMemoryRegistry {
        SharedMemoryRegistry::default()
    }

    /// Maps `byte_size` bytes of the object `key` from `offset`, under `name`.
    pub fn register(&self, name: &str, key: &str, offset: u64, byte_size: u64) -> Result<()> {
        if name.is_empty() {
            return Err(ServerError::invalid("a shared memory region needs a non-empty name"));
        }
        // Checked before and after mapping: a concurrent register of the same
        // name must not replace a region others may be using.
        let taken =
            || ServerError::new(ErrorKind::AlreadyExists, format!("shared memory region '{name}' already in manager"));
        if self.lock_read().contains_key(name) {
            return Err(taken());
        }
        let region = Arc::new(MappedRegion::open(name, key, offset, byte_size)?);
        let mut regions = self.lock_write();
        if regions.contains_key(name) {
            return Err(taken());
        }
        regions.insert(name.to_string(), region);
        tracing::debug!(
            "registered system shared memory region '{name}' (key '{key}', offset {offset}, {byte_size} bytes)"
        );
        Ok(())
    }

    /// One region's status, or every region's (sorted by name) for `None`.
    pub fn status(&self, name: Option<&str>) -> Result<Vec<RegionStatus>> {
        let regions = self.lock_read();
        match name {
            None => Ok(regions.values().map(|r| r.status.clone()).collect()),
            Some(name) => regions
                .get(name)
                .map(|r| vec![r.status.clone()])
                .ok_or_else(|| ServerError::not_found(format!("Unable to find system shared memory region: '{name}'"))),
        }
    }

    /// Forgets one region, or all for `None`. Unknown names are ignored.
    pub fn unregister(&self, name: Option<&str>) {
        let mut regions = self.lock_write();
        match name {
            None => regions.clear(),
            Some(name) => {
                regions.remove(name);
            }
        }
    }

    fn region(&self, name: &str) -> Result<Arc<MappedRegion>> {
        self.lock_read()
            .get(name)
            .cloned()
            .ok_or_else(|| ServerError::not_found(format!("Unable to find shared memory region: '{name}'")))
    }

    /// Checks that region `name` exists and `[offset, offset + byte_size)` lies
    /// inside it (for outputs, before the model runs).
    pub fn check_window(&self, name: &str, offset: u64, byte_size: u64) -> Result<()> {
        self.region(name)?.window(offset, byte_size).map(|_| ())
    }

    /// A copy of `byte_size` bytes at `offset` within region `name`.
    pub fn read(&self, name: &str, offset: u64, byte_size: u64) -> Result<Vec<u8>> {
        let region = self.region(name)?;
        if byte_size == 0 {
            // Zero elements: nothing to read, but the region must still exist
            // and the offset lie inside it.
            region.window(offset, 0)?;
            return Ok(Vec::new());
        }
        let range = region.window(offset, byte_size)?;
        let mut out = vec![0u8; range.len()];
        // SAFETY: `range` lies inside the live mapping (checked by `window`),
        // `out` is a separate allocation of the same length.
        unsafe { std::ptr::copy_nonoverlapping(region.base.add(range.start), out.as_mut_ptr(), range.len()) };
        Ok(out)
    }

    /// Copies `data` to `offset` within region `name`; the request gave
    /// `byte_size` bytes there for it, so `data` must not be longer.
    pub fn write(&self, name: &str, offset: u64, byte_size: u64, data: &[u8]) -> Result<()> {
        let region = self.region(name)?;
        if data.len() as u64 > byte_size {
            return Err(ServerError::invalid(format!(
                "shared memory size specified with the request ({byte_size} bytes) should be at least {} bytes to \
                 hold the results",
                data.len()
            )));
        }
        let range = region.window(offset, byte_size)?;
        // SAFETY: `range` (at least `data.len()` long) lies inside the live
        // mapping; `data` is server memory, so the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), region.base.add(range.start), data.len()) };
        Ok(())
    }

    fn lock_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<MappedRegion>>> {
        // The map is never left half-changed, so a poisoned lock is still usable.
        self.regions.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<MappedRegion>>> {
        self.regions.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A POSIX shared-memory object for one test, unlinked when dropped.
    struct TestObject {
        key: String,
        fd: OwnedFd,
    }

    impl TestObject {
        fn new(tag: &str, size: usize) -> TestObject {
            let key = format!("/smelt_shm_test_{}_{tag}", std::process::id());
            let c_key = CString::new(key.clone()).unwrap();
            let raw = unsafe { libc::shm_open(c_key.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC, 0o600) };
            assert!(raw >= 0, "shm_open: {}", os_error());
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) }, 0);
            TestObject { key, fd }
        }

        fn resize(&self, size: usize) {
            assert_eq!(unsafe { libc::ftruncate(self.fd.as_raw_fd(), size as libc::off_t) }, 0);
        }

        /// The object's bytes, read through a fresh descriptor (another process's view).
        fn contents(&self) -> Vec<u8> {
            let size = object_size(&self.fd).unwrap() as usize;
            let mut out = vec![0u8; size];
            let n = unsafe { libc::pread(self.fd.as_raw_fd(), out.as_mut_ptr().cast(), size, 0) };
            assert_eq!(n as usize, size);
            out
        }

        fn fill(&self, offset: usize, data: &[u8]) {
            let n =
                unsafe { libc::pwrite(self.fd.as_raw_fd(), data.as_ptr().cast(), data.len(), offset as libc::off_t) };
            assert_eq!(n as usize, data.len());
        }
    }

    impl Drop for TestObject {
        fn drop(&mut self) {
            let c_key = CString::new(self.key.clone()).unwrap();
            unsafe { libc::shm_unlink(c_key.as_ptr()) };
        }
    }

    #[test]
    fn register_read_write_status_unregister() {
        let object = TestObject::new("basic", 64);
        object.fill(0, &(0u8..64).collect::<Vec<_>>());
        let registry = SharedMemoryRegistry::new();
        registry.register("in", &object.key, 8, 16).unwrap();
        // The window starts at the registered offset.
        assert_eq!(registry.read("in", 0, 4).unwrap(), vec![8, 9, 10, 11]);
        assert_eq!(registry.read("in", 12, 4).unwrap(), vec![20, 21, 22, 23]);
        registry.register("out", &object.key, 32, 32).unwrap();
        registry.write("out", 4, 8, &[0xAA; 8]).unwrap();
        let seen = object.contents();
        assert_eq!(&seen[36..44], &[0xAA; 8]);
        assert_eq!(seen[35], 35);
        assert_eq!(seen[44], 44);

        let all = registry.status(None).unwrap();
        assert_eq!(
            all,
            vec![
                RegionStatus { name: "in".into(), key: object.key.clone(), offset: 8, byte_size: 16 },
                RegionStatus { name: "out".into(), key: object.key.clone(), offset: 32, byte_size: 32 },
            ]
        );
        assert_eq!(registry.status(Some("out")).unwrap(), all[1..].to_vec());
        registry.unregister(Some("in"));
        registry.unregister(Some("never-registered"));
        let e = registry.status(Some("in")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.contains("'in'"), "{e}");
        let e = registry.read("in", 0, 4).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        registry.unregister(None);
        assert!(registry.status(None).unwrap().is_empty());
    }

    #[test]
    fn registration_errors_name_what_is_wrong() {
        let object = TestObject::new("errors", 100);
        let registry = SharedMemoryRegistry::new();
        registry.register("r", &object.key, 0, 100).unwrap();
        let e = registry.register("r", &object.key, 0, 10).unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert!(e.message.contains("'r' already"), "{e}");
        let e = registry.register("x", "/smelt_shm_test_no_such_key", 0, 10).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(e.message.contains("/smelt_shm_test_no_such_key"), "{e}");
        let e = registry.register("x", &object.key, 90, 11).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArg);
        assert!(e.message.contains("'x'") && e.message.contains("100 bytes"), "{e}");
        let e = registry.register("x", &object.key, u64::MAX, 2).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArg);
        let e = registry.register("x", &object.key, 0, 0).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArg);
        let e = registry.register("x", "bad\0key", 0, 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArg);
        assert!(registry.register("", &object.key, 0, 1).is_err());
        // Only the first registration took.
        assert_eq!(registry.status(None).unwrap().len(), 1);
    }

    #[test]
    fn accesses_outside_the_window_are_refused() {
        let object = TestObject::new("bounds", 32);
        let registry = SharedMemoryRegistry::new();
        registry.register("r", &object.key, 4, 16).unwrap();
        assert_eq!(registry.read("r", 0, 16).unwrap().len(), 16);
        let e = registry.read("r", 16, 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArg);
        assert!(e.message.contains("Invalid offset for shared memory region: 'r'"), "{e}");
        let e = registry.read("r", 8, 9).unwrap_err();
        assert!(e.message.contains("Invalid offset + byte size"), "{e}");
        assert!(registry.read("r", 8, u64::MAX).is_err());
        let e = registry.write("r", 0, 4, &[1; 8]).unwrap_err();
        assert!(e.message.contains("at least 8 bytes"), "{e}");
        assert!(registry.write("r", 12, 8, &[1; 8]).is_err());
        let e = registry.write("nope", 0, 4, &[1; 4]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.contains("'nope'"), "{e}");
    }

    #[test]
    fn unaligned_offsets_map() {
        let page = page_size();
        let object = TestObject::new("unaligned", page * 2 + 100);
        object.fill(page + 3, b"hello");
        let registry = SharedMemoryRegistry::new();
        registry.register("r", &object.key, (page + 3) as u64, 5).unwrap();
        assert_eq!(registry.read("r", 0, 5).unwrap(), b"hello");
        registry.write("r", 1, 4, b"ELL").unwrap();
        assert_eq!(&object.contents()[page + 3..page + 8], b"hELLo");
    }

    #[test]
    fn a_shrunk_object_is_an_error_not_a_crash() {
        let object = TestObject::new("shrink", 8192);
        let registry = SharedMemoryRegistry::new();
        registry.register("r", &object.key, 0, 8192).unwrap();
        object.resize(100);
        let e = registry.read("r", 4096, 16).unwrap_err();
        assert!(e.message.contains("shrank"), "{e}");
        assert!(registry.write("r", 4096, 16, &[0; 16]).is_err());
        assert_eq!(registry.read("r", 0, 16).unwrap().len(), 16);
    }

    #[test]
    fn a_region_in_use_outlives_its_unregistration() {
        let object = TestObject::new("inuse", 16);
        object.fill(0, b"abcd");
        let registry = SharedMemoryRegistry::new();
        registry.register("r", &object.key, 0, 16).unwrap();
        let held = registry.region("r").unwrap();
        registry.unregister(None);
        let range = held.window(0, 4).unwrap();
        let bytes = unsafe { std::slice::from_raw_parts(held.base.add(range.start), 4) };
        assert_eq!(bytes, b"abcd");
    }

    #[test]
    fn concurrent_registrations_of_one_name_admit_one() {
        let object = TestObject::new("race", 16);
        let registry = Arc::new(SharedMemoryRegistry::new());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (registry, key) = (registry.clone(), object.key.clone());
                std::thread::spawn(move || registry.register("same", &key, 0, 16).is_ok())
            })
            .collect();
        let wins = handles.into_iter().map(|h| h.join().unwrap()).filter(|&ok| ok).count();
        assert_eq!(wins, 1);
    }
}
