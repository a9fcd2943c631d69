//! dawn-observe (being written)
