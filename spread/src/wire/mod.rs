//! Wire formats: every byte that crosses a socket, as typed values with pure codecs.

pub mod daemon;
