//! rkos-bundle: upgrade bundles: signed manifests, verified streaming download, staging.
