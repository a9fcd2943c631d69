//! dawn-core (being written)
