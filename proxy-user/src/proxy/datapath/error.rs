//! The datapath's errors, and their chains rendered on one line for logs.
use std::{io, path::PathBuf};

use aya::{EbpfError, maps::MapError, pin::PinError, programs::ProgramError};

use super::programmed::MapOp;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("{path} is not {what}")]
    WrongFilesystem { path: PathBuf, what: &'static str },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        cause: io::Error,
    },
    #[error("loading the eBPF object")]
    Load(#[source] EbpfError),
    #[error("reading the kernel's BTF (/sys/kernel/btf/vmlinux)")]
    Btf(#[source] aya::BtfError),
    #[error("linking the eBPF object's kernel function calls")]
    Kfunc(#[source] crate::sys::kfunc::KfuncError),
    #[error("program {name}: creating its iterator link")]
    IterLink {
        name: &'static str,
        #[source]
        cause: io::Error,
    },
    #[error("no network interface {0:?} here")]
    NoInterface(String),
    #[error("the eBPF object has no program {0}")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no map {0}")]
    MissingMap(&'static str),
    #[error("program {name}")]
    Program {
        name: &'static str,
        #[source]
        cause: ProgramError,
    },
    #[error("program {name}: its link is not a file-descriptor link")]
    LinkConvert {
        name: &'static str,
        #[source]
        cause: aya::programs::links::LinkError,
    },
    #[error("pinned link {path}")]
    Link {
        path: PathBuf,
        #[source]
        cause: io::Error,
    },
    #[error("pinning link {path}")]
    Pin {
        path: PathBuf,
        #[source]
        cause: PinError,
    },
    #[error("repairing the pinned maps")]
    Repair(#[source] WriteError),
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        cause: MapError,
    },
    #[error(
        "pinned map {path} has {found}, this agent's programs need {expected}; \
         the map layout changed without a new maps directory (remove the directory to start over)"
    )]
    PinnedLayout {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// A map write the kernel refused, and which write it was.
#[derive(Debug, thiserror::Error)]
#[error("{op:?}")]
pub struct WriteError {
    pub op: MapOp,
    #[source]
    pub cause: MapError,
}

/// `error: cause: cause…` on one line, for logs: the datapath's errors keep
/// the kernel's errno in their sources.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}
