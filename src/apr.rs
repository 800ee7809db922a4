//! Small helpers over APR: strings, arrays, pool-owned Rust values.

use std::ffi::{c_char, c_void, CStr};

use crate::ffi;

/// A C string from httpd as a Rust string (lossy); null gives "".
///
/// # Safety
/// `p` must be null or a NUL-terminated string valid for the call.
pub unsafe fn to_string(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Copy `s` into `pool` as a C string that lives as long as the pool.
///
/// # Safety
/// `pool` must be a live APR pool.
pub unsafe fn pstrdup(pool: *mut ffi::apr_pool_t, s: &str) -> *const c_char {
    // SAFETY: apr_pstrmemdup copies len bytes and NUL-terminates; pool is live.
    unsafe { ffi::apr_pstrmemdup(pool, s.as_ptr() as *const c_char, s.len()) }
}

/// The strings of an `apr_array_header_t` of `char *` (null array gives none).
///
/// # Safety
/// `arr` must be null or a live array whose elements are `char *`.
pub unsafe fn strings_of(arr: *const ffi::apr_array_header_t) -> Vec<String> {
    if arr.is_null() {
        return Vec::new();
    }
    // SAFETY: the caller guarantees the element type; nelts elements are initialised.
    unsafe {
        let a = &*arr;
        let elts = a.elts as *const *const c_char;
        (0..a.nelts.max(0) as usize)
            .map(|i| to_string(*elts.add(i)))
            .collect()
    }
}

unsafe extern "C" fn drop_box<T>(data: *mut c_void) -> ffi::apr_status_t {
    crate::guard::guard("pool cleanup", std::ptr::null(), 0, || {
        // SAFETY: data came from Box::into_raw in pool_box and is dropped exactly once, here.
        drop(unsafe { Box::from_raw(data as *mut T) });
        0
    })
}

/// Move `value` into memory owned by `pool`: it is dropped when the pool is cleared.
///
/// # Safety
/// `pool` must be a live APR pool; the returned pointer is valid until the pool is cleared.
pub unsafe fn pool_box<T>(pool: *mut ffi::apr_pool_t, value: T) -> *mut T {
    let ptr = Box::into_raw(Box::new(value));
    // SAFETY: ptr stays valid until the cleanup runs; apr_pool_cleanup_null is APR's no-op.
    unsafe {
        ffi::apr_pool_cleanup_register(
            pool,
            ptr as *const c_void,
            Some(drop_box::<T>),
            Some(ffi::apr_pool_cleanup_null),
        );
    }
    ptr
}

/// The value stored under `key` in `pool`'s user data, if any.
///
/// # Safety
/// `pool` must be live; `key` must always be used with the same `T`.
pub unsafe fn pool_userdata_get<'a, T>(
    pool: *mut ffi::apr_pool_t,
    key: &'static CStr,
) -> Option<&'a T> {
    let mut data: *mut c_void = std::ptr::null_mut();
    // SAFETY: see the function contract.
    unsafe {
        ffi::apr_pool_userdata_get(&mut data, key.as_ptr(), pool);
        (data as *const T).as_ref()
    }
}

/// Push a pool copy of `s` onto an array of `char *`.
///
/// # Safety
/// `arr` must be a live array of `char *`; `pool` must live at least as long as the array.
pub unsafe fn push_string(arr: *mut ffi::apr_array_header_t, pool: *mut ffi::apr_pool_t, s: &str) {
    // SAFETY: apr_array_push returns a slot of elt_size (a pointer) bytes.
    unsafe {
        let slot = ffi::apr_array_push(arr) as *mut *const c_char;
        *slot = pstrdup(pool, s);
    }
}

/// The value stored under `key` in `pool`'s user data, created with `make` on first use. The
/// value lives (and is dropped) with the pool, so nothing of it survives a config generation.
///
/// # Safety
/// `pool` must be live; `key` must always be used with the same `T`; the returned reference
/// must not be held across another call for the same key.
pub unsafe fn pool_userdata<'a, T>(
    pool: *mut ffi::apr_pool_t,
    key: &'static CStr,
    make: impl FnOnce() -> T,
) -> &'a mut T {
    // SAFETY: see the function contract.
    unsafe {
        let mut data: *mut c_void = std::ptr::null_mut();
        ffi::apr_pool_userdata_get(&mut data, key.as_ptr(), pool);
        if data.is_null() {
            let ptr = pool_box(pool, make());
            ffi::apr_pool_userdata_setn(ptr as *const c_void, key.as_ptr(), None, pool);
            data = ptr as *mut c_void;
        }
        &mut *(data as *mut T)
    }
}
