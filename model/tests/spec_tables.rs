//! The lazy knobs' defaults (spec §3.3) and the rules' stated/inferred/open tags (spec
//! §3.2), as the spec's tables write them: a change to either is a change to the spec.

use lazyvma_model::knobs::Knobs;
use lazyvma_model::lazy::{Rule, Status};

#[test]
fn knob_defaults_are_the_specs() {
    let spec = [
        ("lazy_enabled", "true"),
        ("fork_of_tree_parent", "upgrade_first"),
        ("cow_in_tree_parent", "lazy_to_vma"),
        ("split_upgrades", "false"),
        ("merge_lazy_lazy", "same_base"),
        ("merge_lazy_tree", "refuse"),
        ("mremap_upgrades", "true"),
        ("ksm_upgrades", "true"),
        ("thp_upgrades", "false"),
        ("upgrade_uses_neighbour_reuse", "true"),
        ("lazy_folio_pins_vma", "true"),
        ("downgrade", "false"),
        ("upgrade_when_parent_has_no_pages", "false"),
    ];
    assert_eq!(Knobs::default().pairs(), spec);
}

#[test]
fn rule_tags_are_the_specs() {
    use Status::*;
    // §3.2's status column. L2: the upgrade and "no child AV" are stated (the child's AVC
    // count is inferred); L4 "as eager" and L17/L18 are inferred; the knob-only rows open.
    let spec = [
        ("L1", Stated),
        ("L1b", Stated),
        ("L2", Stated),
        ("L3", Inferred),
        ("L4", Inferred),
        ("L5", Open),
        ("L6", Open),
        ("L7", Inferred),
        ("L7b", Inferred),
        ("L8", Inferred),
        ("L8b", Open),
        ("L9", Inferred),
        ("L9b", Inferred),
        ("L10", Inferred),
        ("L10b", Inferred),
        ("L11", Inferred),
        ("L12", Inferred),
        ("L13", Stated),
        ("L13b", Stated),
        ("L14", Inferred),
        ("L15", Open),
        ("L16", Inferred),
        ("L17", Inferred),
        ("L18", Inferred),
    ];
    let got: Vec<(&str, Status)> = Rule::ALL.iter().map(|r| (r.name(), r.status())).collect();
    assert_eq!(got, spec);
}
