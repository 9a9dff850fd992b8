//! The images skiff builds: their names, their layers (Debian packages and
//! files) and how they start.
use std::path::{Path, PathBuf};

/// `PATH` as Debian's images set it.
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The busybox applets linked into /bin: what a shell, probes, `kubectl
/// exec` and `kubectl cp` (tar) need. Not `wget`: Debian's static
/// busybox resolves names through a static glibc's NSS, and its wget was
/// seen to crash on names; probes and tests use `nc`.
const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "ls",
    "cat",
    "echo",
    "printf",
    "sleep",
    "id",
    "ps",
    "hostname",
    "nc",
    "mkdir",
    "rmdir",
    "rm",
    "touch",
    "grep",
    "env",
    "mount",
    "umount",
    "df",
    "du",
    "head",
    "tail",
    "wc",
    "true",
    "false",
    "kill",
    "tar",
    "cp",
    "mv",
    "ln",
    "chmod",
    "chown",
    "pwd",
    "uname",
    "whoami",
    "date",
    "sed",
    "awk",
    "find",
    "xargs",
    "sort",
    "uniq",
    "cut",
    "tr",
    "test",
    "[",
    "expr",
    "seq",
    "stat",
    "free",
    "top",
    "uptime",
    "ip",
    "ifconfig",
    "ping",
    "netstat",
    "nslookup",
    "which",
    "basename",
    "dirname",
    "readlink",
    "realpath",
    "tee",
    "yes",
    "timeout",
    "gzip",
    "gunzip",
    "zcat",
    "md5sum",
    "sha256sum",
    "vi",
    "less",
    "dmesg",
    "pidof",
    "pgrep",
    "pkill",
    "watch",
];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\n";

/// One image: its reference, its layers bottom first, and its config.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The full reference the store records, as containerd normalises
    /// names: `image: redis` is `docker.io/library/redis:latest`.
    pub reference: &'static str,
    /// The archive's name in the image directory, without `.tar`.
    pub file_stem: &'static str,
    pub layers: Vec<LayerSpec>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<&'static str>,
    /// Ports the image serves on (`<port>/tcp`), for `docker inspect`-like
    /// tools; nothing opens them.
    pub exposed_ports: Vec<&'static str>,
}

/// One layer: Debian packages unpacked, then files added on top.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    pub packages: Vec<&'static str>,
    pub files: Vec<ExtraFile>,
}

/// A file a layer adds at `path` (relative to the root).
#[derive(Debug, Clone)]
pub struct ExtraFile {
    pub path: String,
    pub content: Content,
}

#[derive(Debug, Clone)]
pub enum Content {
    Text {
        text: &'static str,
        mode: u32,
    },
    Symlink(&'static str),
    Dir {
        mode: u32,
    },
    /// A file of this machine, copied with its content (mode 0755).
    Host(PathBuf),
}

/// The busybox base every image starts from: a shell, the applets, root
/// and nobody (65534), /tmp and /root.
fn busybox_base() -> LayerSpec {
    let mut files: Vec<ExtraFile> = APPLETS
        .iter()
        .map(|applet| ExtraFile {
            path: format!("bin/{applet}"),
            content: Content::Symlink("busybox"),
        })
        .collect();
    files.extend([
        text("etc/passwd", PASSWD, 0o644),
        text("etc/group", GROUP, 0o644),
        dir("tmp", 0o1777),
        dir("root", 0o700),
    ]);
    LayerSpec {
        packages: vec!["busybox-static"],
        files,
    }
}

/// The C library dynamically linked programs need.
fn glibc() -> LayerSpec {
    LayerSpec {
        packages: vec!["libc6", "libgcc-s1"],
        files: Vec::new(),
    }
}

fn text(path: &str, text: &'static str, mode: u32) -> ExtraFile {
    ExtraFile {
        path: path.to_owned(),
        content: Content::Text { text, mode },
    }
}

fn dir(path: &str, mode: u32) -> ExtraFile {
    ExtraFile {
        path: path.to_owned(),
        content: Content::Dir { mode },
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|&item| item.to_owned()).collect()
}

/// Every image, with the echo server built at `echo`.
pub fn catalogue(echo: &Path) -> Vec<ImageSpec> {
    let image = |reference, file_stem, layers| ImageSpec {
        reference,
        file_stem,
        layers,
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        env: vec![PATH_ENV.to_owned()],
        working_dir: None,
        exposed_ports: Vec::new(),
    };
    vec![
        ImageSpec {
            cmd: strings(&["sh"]),
            ..image(
                "docker.io/skiff/busybox:latest",
                "busybox",
                vec![busybox_base()],
            )
        },
        ImageSpec {
            entrypoint: strings(&["/usr/local/bin/skiff-echo"]),
            cmd: strings(&["serve", "--name", "skiff-echo", "--tcp", "8080"]),
            exposed_ports: vec!["8080/tcp"],
            ..image(
                "docker.io/skiff/echo:latest",
                "echo",
                vec![
                    busybox_base(),
                    glibc(),
                    LayerSpec {
                        packages: Vec::new(),
                        files: vec![ExtraFile {
                            path: "usr/local/bin/skiff-echo".to_owned(),
                            content: Content::Host(echo.to_owned()),
                        }],
                    },
                ],
            )
        },
        ImageSpec {
            entrypoint: strings(&["/usr/bin/iperf3"]),
            cmd: strings(&["--server"]),
            exposed_ports: vec!["5201/tcp"],
            ..image(
                "docker.io/skiff/iperf3:latest",
                "iperf3",
                vec![
                    busybox_base(),
                    glibc(),
                    LayerSpec {
                        packages: vec!["iperf3", "libiperf0", "libsctp1", "libssl3"],
                        files: Vec::new(),
                    },
                ],
            )
        },
        // `image: redis`, as the guestbook's redis master names it. Without
        // a config file redis serves only loopback unless told otherwise.
        ImageSpec {
            cmd: strings(&[
                "redis-server",
                "--bind",
                "0.0.0.0",
                "--protected-mode",
                "no",
            ]),
            working_dir: Some("/data"),
            exposed_ports: vec!["6379/tcp"],
            ..image(
                "docker.io/library/redis:latest",
                "redis",
                vec![
                    busybox_base(),
                    glibc(),
                    LayerSpec {
                        // redis-server's and redis-tools' Depends, closed
                        // over the libraries (`apt-cache depends`), without
                        // adduser and init-system-helpers.
                        packages: vec![
                            "redis-server",
                            "redis-tools",
                            "libatomic1",
                            "libjemalloc2",
                            "libstdc++6",
                            "liblzf1",
                            "libssl3",
                            "libsystemd0",
                            "libcap2",
                            "libgcrypt20",
                            "libgpg-error0",
                            "liblz4-1",
                            "liblzma5",
                            "libzstd1",
                        ],
                        files: vec![dir("data", 0o755)],
                    },
                ],
            )
        },
        // Python with the official `kubernetes` client, for in-cluster
        // clients (`config.load_incluster_config()`) in tests.
        ImageSpec {
            cmd: strings(&["python3"]),
            ..image(
                "docker.io/skiff/python-kubernetes:latest",
                "python-kubernetes",
                vec![busybox_base(), glibc(), python_kubernetes()],
            )
        },
    ]
}

/// python3 and python3-kubernetes with their Depends, closed over the
/// libraries (`apt-cache depends --recurse`), without what only Debian's
/// maintainer scripts and tools use (debconf, perl, dpkg, tzdata).
fn python_kubernetes() -> LayerSpec {
    LayerSpec {
        packages: vec![
            "python3",
            "python3-minimal",
            "python3.11",
            "python3.11-minimal",
            "libpython3-stdlib",
            "libpython3.11-minimal",
            "libpython3.11-stdlib",
            "media-types",
            "libbz2-1.0",
            "libcrypt1",
            "libexpat1",
            "libffi8",
            "liblzma5",
            "libncursesw6",
            "libreadline8",
            "libsqlite3-0",
            "libssl3",
            "libtinfo6",
            "libuuid1",
            "libyaml-0-2",
            "zlib1g",
            "python3-kubernetes",
            "python3-blinker",
            "python3-cachetools",
            "python3-certifi",
            "python3-cffi-backend",
            "python3-chardet",
            "python3-charset-normalizer",
            "python3-cryptography",
            "python3-dateutil",
            "python3-google-auth",
            "python3-idna",
            "python3-jwt",
            "python3-oauthlib",
            "python3-pkg-resources",
            "python3-pyasn1",
            "python3-pyasn1-modules",
            "python3-requests",
            "python3-requests-oauthlib",
            "python3-rsa",
            "python3-six",
            "python3-urllib3",
            "python3-websocket",
            "python3-yaml",
        ],
        files: Vec::new(),
    }
}
