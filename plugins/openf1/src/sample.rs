//! Placeholder: the simulated sample-session generator is being written.
