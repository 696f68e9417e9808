//! The installed disk's GPT layout, in order (the grow service relies on `DATA` being last).

use crate::label;

/// One partition: its number, its GPT name and its `sgdisk` type code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub number: u32,
    pub name: &'static str,
    pub type_code: &'static str,
}

/// GRUB's core image for BIOS boots.
pub const BIOS: Partition = Partition {
    number: 1,
    name: "BIOS",
    type_code: "EF02",
};
/// The EFI system partition; its file system is labelled like it.
pub const EFI: Partition = Partition {
    number: 2,
    name: label::EFI,
    type_code: "EF00",
};
pub const STATE: Partition = Partition {
    number: 3,
    name: label::STATE,
    type_code: "8300",
};
pub const DATA: Partition = Partition {
    number: 4,
    name: label::DATA,
    type_code: "8300",
};

/// Every partition, in disk order.
pub const ALL: [Partition; 4] = [BIOS, EFI, STATE, DATA];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_in_disk_order_with_data_last() {
        for (i, p) in ALL.iter().enumerate() {
            assert_eq!(p.number as usize, i + 1, "{p:?}");
        }
        assert_eq!(ALL.last(), Some(&DATA));
    }
}
