//! Reliability tests of the replica under a simulated disk: power loss at
//! every sync point, injected I/O errors, and damaged files. Each prints
//! its figures; environment variables select the long versions (see
//! RELIABILITY.md at the repository root).

mod reliability {
    pub mod corruption;
    pub mod io_faults;
    pub mod power_loss;
    pub mod sim_disk;
    pub mod workload;
}
