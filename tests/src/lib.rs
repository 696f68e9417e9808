//! Integration and end-to-end tests of rkos, including QEMU boot tests.
