use std::{io, path::PathBuf};

use aya::{EbpfError, maps::MapError, pin::PinError, programs::ProgramError};

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("{path} is not {what}")]
    WrongFilesystem { path: PathBuf, what: &'static str },
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    #[error("loading the eBPF object: {0}")]
    Load(EbpfError),
    #[error("the eBPF object has no program {0}")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no map {0}")]
    MissingMap(&'static str),
    #[error("program {name}: {cause}")]
    Program {
        name: &'static str,
        cause: ProgramError,
    },
    #[error("program {name}: its link is not a file-descriptor link: {cause}")]
    LinkConvert {
        name: &'static str,
        cause: aya::programs::links::LinkError,
    },
    #[error("pinned link {path}: {cause}")]
    Link { path: PathBuf, cause: io::Error },
    #[error("pinning link {path}: {cause}")]
    Pin { path: PathBuf, cause: PinError },
    #[error("repairing the pinned maps: {0}")]
    Repair(super::WriteError),
    #[error("map {name}: {cause}")]
    Map { name: &'static str, cause: MapError },
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
