//! ZEGOCLOUD products: ZIM `UserRegister`, signed with an md5 query
//! signature. See docs/vendors/zim.md.

pub mod zim;
