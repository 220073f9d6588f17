//! The LAZY model's knobs: the series' rules that its text does not state (spec §3.3).
//! Defaults are the ones that reproduce the cover letter's numbers.
//!
//! On the command line a knob is `--knob NAME=VALUE`, NAME in lower case without the
//! `K_` prefix (`fork_of_tree_parent=share`, `split_upgrades=true`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForkOfTreeParent {
    /// The TREE_PARENT VMA gets its own anon_vma first (+1 AV +1 AVC), then the child clones L+1.
    UpgradeFirst,
    /// The child is TREE_PARENT on the same chain (+L AVC).
    Share,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CowInTreeParent {
    /// New exclusive folio maps to the VMA (lazy bit): 0 objects.
    LazyToVma,
    /// New exclusive folio maps to the parent's anon_vma: 0 objects.
    ParentAv,
    /// The VMA gets its own anon_vma: +1 AV +1 AVC.
    Upgrade,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeLazyLazy {
    /// LAZY/NONE VMAs with the same `vma_mapping_base` merge, costing nothing.
    SameBase,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeLazyTree {
    Refuse,
    /// Upgrade the LAZY side, then apply the eager rules.
    Upgrade,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knobs {
    pub lazy_enabled: bool,
    pub fork_of_tree_parent: ForkOfTreeParent,
    pub cow_in_tree_parent: CowInTreeParent,
    pub split_upgrades: bool,
    pub merge_lazy_lazy: MergeLazyLazy,
    pub merge_lazy_tree: MergeLazyTree,
    pub mremap_upgrades: bool,
    pub ksm_upgrades: bool,
    pub thp_upgrades: bool,
    pub upgrade_uses_neighbour_reuse: bool,
    pub lazy_folio_pins_vma: bool,
    pub downgrade: bool,
    /// A NONE VMA at fork: `false` = as eager, no anon_vma without a fault.
    pub upgrade_when_parent_has_no_pages: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            lazy_enabled: true,
            fork_of_tree_parent: ForkOfTreeParent::UpgradeFirst,
            cow_in_tree_parent: CowInTreeParent::LazyToVma,
            split_upgrades: false,
            merge_lazy_lazy: MergeLazyLazy::SameBase,
            merge_lazy_tree: MergeLazyTree::Refuse,
            mremap_upgrades: true,
            ksm_upgrades: true,
            thp_upgrades: false,
            upgrade_uses_neighbour_reuse: true,
            lazy_folio_pins_vma: true,
            downgrade: false,
            upgrade_when_parent_has_no_pages: false,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KnobError {
    #[error("knob `{0}` is not NAME=VALUE")]
    Syntax(String),
    #[error("unknown knob `{name}`; knobs: {known}")]
    Unknown { name: String, known: String },
    #[error("knob `{name}` takes one of {values}, not `{value}`")]
    Value { name: String, value: String, values: String },
}

/// Every knob with the values it takes (the first listed is not necessarily the default).
pub const KNOBS: &[(&str, &[&str])] = &[
    ("lazy_enabled", &["true", "false"]),
    ("fork_of_tree_parent", &["upgrade_first", "share"]),
    ("cow_in_tree_parent", &["lazy_to_vma", "parent_av", "upgrade"]),
    ("split_upgrades", &["true", "false"]),
    ("merge_lazy_lazy", &["same_base", "never"]),
    ("merge_lazy_tree", &["refuse", "upgrade"]),
    ("mremap_upgrades", &["true", "false"]),
    ("ksm_upgrades", &["true", "false"]),
    ("thp_upgrades", &["true", "false"]),
    ("upgrade_uses_neighbour_reuse", &["true", "false"]),
    ("lazy_folio_pins_vma", &["true", "false"]),
    ("downgrade", &["true", "false"]),
    ("upgrade_when_parent_has_no_pages", &["true", "false"]),
];

impl Knobs {
    /// Apply one `NAME=VALUE` setting (NAME may carry the spec's `K_` prefix, any case).
    pub fn set(&mut self, setting: &str) -> Result<(), KnobError> {
        let (name, value) = setting.split_once('=').ok_or_else(|| KnobError::Syntax(setting.into()))?;
        let name = name.trim().to_ascii_lowercase();
        let name = name.strip_prefix("k_").unwrap_or(&name).to_string();
        let value = value.trim();
        let Some((_, values)) = KNOBS.iter().find(|(n, _)| *n == name) else {
            let known = KNOBS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
            return Err(KnobError::Unknown { name, known });
        };
        if !values.contains(&value) {
            return Err(KnobError::Value { name, value: value.into(), values: values.join("|") });
        }
        let on = value == "true";
        match name.as_str() {
            "lazy_enabled" => self.lazy_enabled = on,
            "fork_of_tree_parent" => self.fork_of_tree_parent = if value == "share" { ForkOfTreeParent::Share } else { ForkOfTreeParent::UpgradeFirst },
            "cow_in_tree_parent" => {
                self.cow_in_tree_parent = match value {
                    "parent_av" => CowInTreeParent::ParentAv,
                    "upgrade" => CowInTreeParent::Upgrade,
                    _ => CowInTreeParent::LazyToVma,
                }
            }
            "split_upgrades" => self.split_upgrades = on,
            "merge_lazy_lazy" => self.merge_lazy_lazy = if value == "never" { MergeLazyLazy::Never } else { MergeLazyLazy::SameBase },
            "merge_lazy_tree" => self.merge_lazy_tree = if value == "upgrade" { MergeLazyTree::Upgrade } else { MergeLazyTree::Refuse },
            "mremap_upgrades" => self.mremap_upgrades = on,
            "ksm_upgrades" => self.ksm_upgrades = on,
            "thp_upgrades" => self.thp_upgrades = on,
            "upgrade_uses_neighbour_reuse" => self.upgrade_uses_neighbour_reuse = on,
            "lazy_folio_pins_vma" => self.lazy_folio_pins_vma = on,
            "downgrade" => self.downgrade = on,
            "upgrade_when_parent_has_no_pages" => self.upgrade_when_parent_has_no_pages = on,
            _ => unreachable!("every name in KNOBS is matched above"),
        }
        Ok(())
    }

    /// `(name, value)` for every knob, in `KNOBS` order, for reports.
    pub fn pairs(&self) -> Vec<(&'static str, &'static str)> {
        let b = |v: bool| if v { "true" } else { "false" };
        vec![
            ("lazy_enabled", b(self.lazy_enabled)),
            (
                "fork_of_tree_parent",
                match self.fork_of_tree_parent {
                    ForkOfTreeParent::UpgradeFirst => "upgrade_first",
                    ForkOfTreeParent::Share => "share",
                },
            ),
            (
                "cow_in_tree_parent",
                match self.cow_in_tree_parent {
                    CowInTreeParent::LazyToVma => "lazy_to_vma",
                    CowInTreeParent::ParentAv => "parent_av",
                    CowInTreeParent::Upgrade => "upgrade",
                },
            ),
            ("split_upgrades", b(self.split_upgrades)),
            (
                "merge_lazy_lazy",
                match self.merge_lazy_lazy {
                    MergeLazyLazy::SameBase => "same_base",
                    MergeLazyLazy::Never => "never",
                },
            ),
            (
                "merge_lazy_tree",
                match self.merge_lazy_tree {
                    MergeLazyTree::Refuse => "refuse",
                    MergeLazyTree::Upgrade => "upgrade",
                },
            ),
            ("mremap_upgrades", b(self.mremap_upgrades)),
            ("ksm_upgrades", b(self.ksm_upgrades)),
            ("thp_upgrades", b(self.thp_upgrades)),
            ("upgrade_uses_neighbour_reuse", b(self.upgrade_uses_neighbour_reuse)),
            ("lazy_folio_pins_vma", b(self.lazy_folio_pins_vma)),
            ("downgrade", b(self.downgrade)),
            ("upgrade_when_parent_has_no_pages", b(self.upgrade_when_parent_has_no_pages)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_knob_round_trips_every_value() {
        for (name, values) in KNOBS {
            for v in *values {
                let mut k = Knobs::default();
                k.set(&format!("{name}={v}")).unwrap();
                assert!(k.pairs().contains(&(name, v)), "{name}={v}");
            }
        }
        assert_eq!(Knobs::default().pairs().len(), KNOBS.len());
    }

    #[test]
    fn bad_settings_name_the_problem() {
        let mut k = Knobs::default();
        assert!(matches!(k.set("nope"), Err(KnobError::Syntax(_))));
        assert!(matches!(k.set("nope=1"), Err(KnobError::Unknown { .. })));
        assert!(matches!(k.set("split_upgrades=maybe"), Err(KnobError::Value { .. })));
        k.set("K_FORK_OF_TREE_PARENT=share").unwrap();
        assert_eq!(k.fork_of_tree_parent, ForkOfTreeParent::Share);
    }
}
