//! rkos-config: the config.yaml schema, its sources and merge, validation and render.
