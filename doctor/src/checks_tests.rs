use super::*;
use crate::mounts::tests::INSTALLED;
use std::os::unix::fs::PermissionsExt;

/// systemd as a list of the active units.
struct Active(&'static [&'static str]);

impl Units for Active {
    fn is_active(&self, unit: &str) -> bool {
        self.0.contains(&unit)
    }
}

const ID: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
const IMAGE_NAME: &str = "iqn.1993-08.org.debian:01:3a4315c1d857";

fn put(root: &Path, path: &str, content: &str) {
    let p = under(root, path);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
}

fn program_at(root: &Path, path: &str) {
    put(root, path, "#!/bin/sh\n");
    fs::set_permissions(under(root, path), fs::Permissions::from_mode(0o755)).unwrap();
}

/// A node that meets every requirement, as an installed rkos node looks.
fn good_node() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    fs::create_dir_all(r.join("sys/module/iscsi_tcp")).unwrap();
    fs::create_dir_all(r.join("sys/module/dm_crypt")).unwrap();
    put(r, "/etc/machine-id", &format!("{ID}\n"));
    put(
        r,
        "/run/rkos/image/etc/iscsi/initiatorname.iscsi",
        &format!("InitiatorName={IMAGE_NAME}\n"),
    );
    iscsi::write(r).unwrap();
    program_at(r, "/usr/sbin/mount.nfs4");
    program_at(r, "/usr/sbin/cryptsetup");
    put(r, "/proc/sys/kernel/osrelease", "6.1.0-57-amd64\n");
    put(
        r,
        "/lib/modules/6.1.0-57-amd64/modules.dep",
        "kernel/fs/nfs/nfs.ko: kernel/net/sunrpc/sunrpc.ko\n\
         kernel/fs/nfs/nfsv4.ko: kernel/fs/nfs/nfs.ko\n",
    );
    put(r, "/proc/self/mountinfo", INSTALLED);
    t
}

const SOCKET: Active = Active(&["iscsid.socket"]);

#[test]
fn a_good_node_passes_every_check() {
    let t = good_node();
    let report = crate::run(t.path(), &SOCKET);
    assert!(report.ok, "{report}");
    assert_eq!(report.checks.len(), 8);
    assert!(report.to_string().ends_with("all 8 checks passed"));
}

#[test]
fn iscsid_socket_or_service() {
    assert!(iscsid(&SOCKET).ok);
    assert!(iscsid(&Active(&["iscsid.service"])).ok);
    let c = iscsid(&Active(&[]));
    assert!(!c.ok && c.detail.contains("iscsid.socket"), "{c:?}");
}

#[test]
fn iscsi_tcp_loaded_or_not() {
    let t = good_node();
    let r = t.path();
    assert!(iscsi_tcp(r).ok);
    fs::remove_dir(r.join("sys/module/iscsi_tcp")).unwrap();
    assert!(!iscsi_tcp(r).ok);
    // /proc/modules is enough
    put(
        r,
        "/proc/modules",
        "iscsi_tcp 24576 0 - Live 0x0\nlibiscsi 1 1 - Live 0x0\n",
    );
    assert!(iscsi_tcp(r).ok);
    put(r, "/proc/modules", "iscsi_tcpx 1 0 - Live 0x0\n");
    assert!(!iscsi_tcp(r).ok);
}

#[test]
fn the_initiator_name_must_be_this_nodes() {
    let t = good_node();
    let r = t.path();
    assert!(initiator_name(r).ok);
    let file = iscsi::NAME_FILE;
    // the image's shared name
    put(r, file, &format!("InitiatorName={IMAGE_NAME}\n"));
    let c = initiator_name(r);
    assert!(!c.ok && c.detail.contains("the image's"), "{c:?}");
    // another well-formed name, not derived from this machine id
    put(r, file, "InitiatorName=iqn.2004-10.org.example:01:abc\n");
    let c = initiator_name(r);
    assert!(!c.ok && c.detail.contains("machine id"), "{c:?}");
    put(r, file, "InitiatorName=not-a-name\n");
    assert!(initiator_name(r).detail.contains("not a well-formed"));
    put(r, file, "GenerateName=yes\n");
    assert!(initiator_name(r).detail.contains("no InitiatorName"));
    fs::remove_file(under(r, file)).unwrap();
    assert!(initiator_name(r).detail.contains("missing"));
    // a clone: new machine id, the old node's name left in the file
    iscsi::write(r).unwrap();
    put(r, "/etc/machine-id", "1f1e2d3c4b5a69788796a5b4c3d2e1f0\n");
    assert!(!initiator_name(r).ok);
    iscsi::write(r).unwrap();
    assert!(initiator_name(r).ok);
}

#[test]
fn nfs4_needs_the_helper_and_the_kernel() {
    let t = good_node();
    let r = t.path();
    assert!(nfs4_client(r).ok);
    assert!(nfs4_client(r).detail.starts_with("/usr/sbin/mount.nfs4"));
    put(
        r,
        "/lib/modules/6.1.0-57-amd64/modules.dep",
        "kernel/fs/nfs/nfs.ko:\n",
    );
    let c = nfs4_client(r);
    assert!(!c.ok && c.detail.contains("NFSv4"), "{c:?}");
    // compressed modules count, as does a kernel that has it loaded already
    put(
        r,
        "/lib/modules/6.1.0-57-amd64/modules.dep",
        "kernel/fs/nfs/nfsv4.ko.xz:\n",
    );
    assert!(nfs4_client(r).ok);
    put(r, "/lib/modules/6.1.0-57-amd64/modules.dep", "");
    put(r, "/proc/filesystems", "nodev\ttmpfs\nnodev\tnfs4\n");
    assert!(nfs4_client(r).ok);
    fs::remove_file(r.join("usr/sbin/mount.nfs4")).unwrap();
    assert!(nfs4_client(r).detail.contains("mount.nfs4 missing"));
}

#[test]
fn cryptsetup_and_dm_crypt() {
    let t = good_node();
    let r = t.path();
    assert!(dm_crypt(r).ok);
    fs::remove_dir(r.join("sys/module/dm_crypt")).unwrap();
    assert!(dm_crypt(r).detail.contains("dm_crypt not loaded"));
    fs::create_dir_all(r.join("sys/module/dm_crypt")).unwrap();
    fs::remove_file(r.join("usr/sbin/cryptsetup")).unwrap();
    assert!(dm_crypt(r).detail.contains("cryptsetup missing"));
    // merged /usr or not: /sbin counts too
    program_at(r, "/sbin/cryptsetup");
    assert!(dm_crypt(r).ok);
}

#[test]
fn longhorn_data_on_the_data_volume() {
    let m = mounts::parse(INSTALLED);
    let c = longhorn_persistent(&m);
    assert!(c.ok && c.detail.contains("/dev/vda4"), "{c:?}");
    // a live node: no data volume, /var/lib/longhorn on the overlay root
    let live = mounts::parse("22 1 0:20 / / rw shared:1 - overlay overlay rw\n");
    let c = longhorn_persistent(&live);
    assert!(!c.ok && c.detail.contains("live"), "{c:?}");
    // the data volume is there, but something else is mounted over /var/lib/longhorn
    let mut over = m.clone();
    over.extend(mounts::parse(
        "40 26 0:44 / /var/lib/longhorn rw shared:9 - tmpfs tmpfs rw\n",
    ));
    let c = longhorn_persistent(&over);
    assert!(!c.ok && c.detail.contains("tmpfs"), "{c:?}");
}

#[test]
fn propagation_shared_where_csi_mounts() {
    assert!(propagation(&mounts::parse(INSTALLED)).ok);
    let private = INSTALLED.replace(
        "/var/lib/kubelet rw,relatime shared:5",
        "/var/lib/kubelet rw,relatime",
    );
    let c = propagation(&mounts::parse(&private));
    assert!(!c.ok && c.detail.contains("/var/lib/kubelet"), "{c:?}");
    let c = propagation(&mounts::parse("22 1 0:20 / / rw - overlay overlay rw\n"));
    assert!(!c.ok && c.detail.contains("/ (mount /)"), "{c:?}");
    assert!(!propagation(&[]).ok);
}

#[test]
fn multipathd_absent_idle_or_blacklisting() {
    let t = good_node();
    let r = t.path();
    let running = Active(&["iscsid.socket", "multipathd.service"]);
    assert_eq!(multipathd(r, &running).detail, "not installed");
    program_at(r, "/usr/sbin/multipathd");
    assert!(multipathd(r, &SOCKET).ok);
    let c = multipathd(r, &running);
    assert!(!c.ok && c.detail.contains("blacklist"), "{c:?}");
    put(
        r,
        "/etc/multipath.conf",
        "defaults {\n  user_friendly_names yes\n}\n",
    );
    assert!(!multipathd(r, &running).ok);
    put(
        r,
        "/etc/multipath/conf.d/longhorn.conf",
        "blacklist {\n  devnode \"^sd[a-z0-9]+\"\n}\n",
    );
    assert!(multipathd(r, &running).ok);
}
