//! Links the object's calls to kernel functions (kfuncs), which aya 0.14
//! does not: bpf-linker leaves each as a call against an undefined symbol,
//! and the kernel wants a `BPF_PSEUDO_KFUNC_CALL` whose immediate is the
//! function's id in the kernel's BTF (as libbpf does for `__ksym` externs).
use aya::Btf;
use aya_obj::btf::BtfKind;
use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget};

/// `BPF_JMP | BPF_CALL`.
pub const CALL_OPCODE: u8 = 0x85;
/// `src_reg` of a call to a kfunc in vmlinux's BTF.
pub const BPF_PSEUDO_KFUNC_CALL: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum KfuncError {
    #[error("the eBPF object cannot be parsed")]
    Parse(#[source] object::Error),
    #[error(
        "the kernel has no kfunc {name} (its BTF does not list it; skiff needs Linux 6.5 or later)"
    )]
    Missing {
        name: String,
        #[source]
        cause: aya::BtfError,
    },
    #[error("the relocation of {name} at offset {offset} of section {section} is not on a call")]
    NotACall {
        name: String,
        section: String,
        offset: u64,
    },
}

/// An ELF image, 8-byte aligned as the object parser needs.
pub struct Image {
    words: Vec<u64>,
    len: usize,
}

impl Image {
    fn copy_of(bytes: &[u8]) -> Self {
        let mut image = Self {
            words: vec![0; bytes.len().div_ceil(8)],
            len: bytes.len(),
        };
        image.bytes_mut().copy_from_slice(bytes);
        image
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` is within the words.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: u64 has no invalid bit patterns, and `len` is within the
        // words.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// A copy of `object` in which every call to an undefined symbol is a
/// kfunc call to the kernel function of that name, resolved in `btf`.
pub fn link(object: &[u8], btf: &Btf) -> Result<Image, KfuncError> {
    let mut patches = Vec::new();
    let file = object::File::parse(object).map_err(KfuncError::Parse)?;
    for section in file.sections() {
        let Some((section_start, _)) = section.file_range() else {
            continue;
        };
        for (offset, relocation) in section.relocations() {
            let RelocationTarget::Symbol(index) = relocation.target() else {
                continue;
            };
            let symbol = file.symbol_by_index(index).map_err(KfuncError::Parse)?;
            if !symbol.is_undefined() {
                continue;
            }
            let name = symbol.name().map_err(KfuncError::Parse)?.to_owned();
            let at = (section_start + offset) as usize;
            if object.get(at) != Some(&CALL_OPCODE) {
                return Err(KfuncError::NotACall {
                    name,
                    section: section.name().unwrap_or("?").to_owned(),
                    offset,
                });
            }
            let id = btf
                .id_by_type_name_kind(&name, BtfKind::Func)
                .map_err(|cause| KfuncError::Missing {
                    name: name.clone(),
                    cause,
                })?;
            patches.push((at, id));
        }
    }
    let mut image = Image::copy_of(object);
    let bytes = image.bytes_mut();
    for (at, id) in patches {
        // Byte 1 holds dst_reg (low nibble) and src_reg (high nibble); the
        // offset stays 0 (the function is in vmlinux, not a module).
        bytes[at + 1] = (bytes[at + 1] & 0x0f) | (BPF_PSEUDO_KFUNC_CALL << 4);
        bytes[at + 4..at + 8].copy_from_slice(&id.to_le_bytes());
    }
    Ok(image)
}
