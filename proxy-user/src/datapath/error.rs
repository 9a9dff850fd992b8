use std::{io, path::PathBuf};

use aya::{EbpfError, maps::MapError, pin::PinError, programs::ProgramError};

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("{path} is not {what}")]
    WrongFilesystem { path: PathBuf, what: &'static str },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("loading the eBPF object: {0}")]
    Load(#[from] EbpfError),
    #[error("the eBPF object has no program {0}")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no map {0}")]
    MissingMap(&'static str),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: ProgramError,
    },
    #[error("program {name}: its link is not a file-descriptor link: {source}")]
    LinkConvert {
        name: &'static str,
        source: aya::programs::links::LinkError,
    },
    #[error("pinned link {path}: {source}")]
    Link { path: PathBuf, source: io::Error },
    #[error("pinning link {path}: {source}")]
    Pin { path: PathBuf, source: PinError },
    #[error("repairing the pinned maps: {0}")]
    Repair(#[from] super::WriteError),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
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
