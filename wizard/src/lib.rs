//! rkos-wizard: the interactive configurator (`os-config`) and the install-to-disk path.
