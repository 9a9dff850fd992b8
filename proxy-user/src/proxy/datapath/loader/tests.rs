use aya_obj::btf::BtfKind;
use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget};

use super::*;
use crate::sys::kfunc::{BPF_PSEUDO_KFUNC_CALL, CALL_OPCODE, link};

#[test]
fn the_socket_reset_call_becomes_a_kfunc_call() {
    let btf = Btf::from_sys_fs().expect("the kernel's BTF");
    let id = btf
        .id_by_type_name_kind("bpf_sock_destroy", BtfKind::Func)
        .expect("bpf_sock_destroy is a kfunc here");
    let image = link(OBJECT, &btf).expect("the object links");
    let file = object::File::parse(image.bytes()).expect("the image parses");
    let section = file.section_by_name("iter/udp").expect("the iterator");
    let (start, _) = section.file_range().expect("in the file");
    let (offset, _) = section
        .relocations()
        .find(|(_, relocation)| {
            let RelocationTarget::Symbol(index) = relocation.target() else {
                return false;
            };
            file.symbol_by_index(index)
                .and_then(|symbol| symbol.name())
                .is_ok_and(|name| name == "bpf_sock_destroy")
        })
        .expect("a call to bpf_sock_destroy");
    let at = (start + offset) as usize;
    let call = &image.bytes()[at..at + 8];
    assert_eq!(call[0], CALL_OPCODE);
    assert_eq!(call[1] >> 4, BPF_PSEUDO_KFUNC_CALL);
    assert_eq!(call[4..8], id.to_le_bytes());
}
