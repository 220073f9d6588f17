//! The LAZY rules of spec §3.2, each with how sure the spec is of it.

use serde::Serialize;

/// How a rule is known (spec §3.2 "status" column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Quoted from the series or its thread.
    Stated,
    /// Deduced from the series' text, diffstat or numbers.
    Inferred,
    /// Nothing decides it; a knob (spec §3.3) picks the behaviour. A kind of inferred.
    Open,
}

macro_rules! rules {
    ($($r:ident $name:literal $status:ident $what:literal;)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Rule { $($r),* }
        impl Rule {
            pub const ALL: &'static [Rule] = &[$(Rule::$r),*];
            pub fn name(self) -> &'static str { match self { $(Rule::$r => $name),* } }
            pub fn status(self) -> Status { match self { $(Rule::$r => Status::$status),* } }
            pub fn what(self) -> &'static str { match self { $(Rule::$r => $what),* } }
        }
    };
}

rules! {
    L1   "L1"   Stated   "first anon fault on NONE -> LAZY, no objects";
    L1b  "L1b"  Stated   "first fault with the runtime switch off: eager prepare";
    L2   "L2"   Stated   "fork of LAZY: parent upgraded, child TREE_PARENT";
    L3   "L3"   Inferred "fork of TREE: child TREE_PARENT clones the chain, no AV";
    L4   "L4"   Inferred "fork of NONE/DONTCOPY/WIPEONFORK: as eager";
    L5   "L5"   Open     "fork of TREE_PARENT (K_FORK_OF_TREE_PARENT)";
    L6   "L6"   Open     "new exclusive folio in TREE_PARENT (K_COW_IN_TREE_PARENT)";
    L7   "L7"   Inferred "split of LAZY (K_SPLIT_UPGRADES)";
    L7b  "L7b"  Inferred "split of TREE/TREE_PARENT: as eager";
    L8   "L8"   Inferred "merge of LAZY/NONE VMAs with the same base (K_MERGE_LAZY_LAZY)";
    L8b  "L8b"  Open     "merge LAZY with TREE (K_MERGE_LAZY_TREE)";
    L9   "L9"   Inferred "mremap move of LAZY (K_MREMAP_UPGRADES)";
    L9b  "L9b"  Inferred "mremap move of TREE/TREE_PARENT: as eager";
    L10  "L10"  Inferred "munmap/exit of LAZY: nothing to free";
    L10b "L10b" Inferred "munmap/exit of TREE_PARENT: frees its L AVCs";
    L11  "L11"  Inferred "exec: new stack stays LAZY";
    L12  "L12"  Inferred "KSM merge in LAZY (K_KSM_UPGRADES)";
    L13  "L13"  Stated   "rmap walk on a LAZY folio: no anon_vma lock";
    L13b "L13b" Stated   "rmap walk on a TREE folio: root rwsem as eager";
    L14  "L14"  Inferred "migration of a LAZY folio pins the VMA, no upgrade";
    L15  "L15"  Open     "THP fault/collapse in LAZY (K_THP_UPGRADES)";
    L16  "L16"  Inferred "upgrade LAZY -> TREE (K_UPGRADE_USES_NEIGHBOUR_REUSE)";
    L17  "L17"  Inferred "downgrade TREE -> LAZY when nothing shares it (K_DOWNGRADE)";
    L18  "L18"  Inferred "MADV_GUARD_INSTALL -> LAZY marker";
}

/// How often each rule fired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleCounts([u64; Rule::ALL.len()]);

impl RuleCounts {
    #[inline]
    pub fn fire(&mut self, r: Rule) {
        self.0[r as usize] += 1;
    }
    pub fn get(&self, r: Rule) -> u64 {
        self.0[r as usize]
    }
    pub fn iter(&self) -> impl Iterator<Item = (Rule, u64)> + '_ {
        Rule::ALL.iter().map(|&r| (r, self.get(r)))
    }
}
