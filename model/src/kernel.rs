//! Kernel-version switches: the rules that differ between versions (spec §1.4, §1.6).

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kernel {
    /// Before 6.0: fork reuse by `degree`; merge eligibility as 6.1.
    Pre6_0,
    /// 6.1: `is_mergeable_anon_vma(av1, av2, existing)`.
    V6_1,
    /// 6.18: `vma_had_uncowed_parents` rules (spec §1.6).
    #[default]
    V6_18,
}

impl Kernel {
    pub fn parse(s: &str) -> Option<Kernel> {
        match s {
            "5" | "5.19" | "pre-6.0" | "pre6.0" => Some(Kernel::Pre6_0),
            "6.1" => Some(Kernel::V6_1),
            "6.18" => Some(Kernel::V6_18),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Pre6_0 => "5.19",
            Kernel::V6_1 => "6.1",
            Kernel::V6_18 => "6.18",
        }
    }
    pub(crate) fn uses_degree(self) -> bool {
        self == Kernel::Pre6_0
    }
    pub(crate) fn has_guard_install(self) -> bool {
        self == Kernel::V6_18
    }
}
