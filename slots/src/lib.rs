//! rkos-slots: the A/B slot layout, the GRUB environment block and boot counting.
