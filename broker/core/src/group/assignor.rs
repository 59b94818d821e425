//! Partition assignment for a consumer group: balanced and sticky.
//!
//! Balanced: members' partition counts differ by at most one whenever their
//! subscriptions allow it. Sticky: a member keeps every partition it had
//! that it is still eligible for, unless balance needs it elsewhere, and
//! each move goes from the most loaded member to the least loaded one, so a
//! rebalance moves as few partitions as it can.
//!
//! Pure: no clock, no I/O; the coordinator feeds it the group as it is.

use std::collections::{BTreeMap, BTreeSet};

/// A topic partition.
pub type TopicPartition = (String, u32);

/// The assignment: member id → partitions.
pub(super) type Assignment = BTreeMap<String, BTreeSet<TopicPartition>>;

/// Assigns every partition of every subscribed topic to one eligible member.
///
/// `subscriptions` maps member id → topics; `partitions` maps topic →
/// partition count (topics missing from it are ignored); `previous` is the
/// last assignment, kept where it still fits.
pub(super) fn assign(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
    previous: &Assignment,
) -> Assignment {
    let eligible = |member: &str, tp: &TopicPartition| {
        subscriptions.get(member).is_some_and(|topics| topics.contains(&tp.0))
            && partitions.get(&tp.0).is_some_and(|n| tp.1 < *n)
    };
    let mut result: Assignment = subscriptions.keys().map(|m| (m.clone(), BTreeSet::new())).collect();

    // Keep what still fits, each partition once.
    let mut taken = BTreeSet::new();
    for (member, owned) in previous {
        let Some(mine) = result.get_mut(member) else { continue };
        for tp in owned {
            if eligible(member, tp) && taken.insert(tp.clone()) {
                mine.insert(tp.clone());
            }
        }
    }

    // Give each free partition to the least loaded member that wants it.
    let wanted: BTreeSet<TopicPartition> = subscriptions
        .values()
        .flatten()
        .filter_map(|topic| partitions.get(topic).map(|n| (topic, *n)))
        .flat_map(|(topic, n)| (0..n).map(move |p| (topic.clone(), p)))
        .collect();
    for tp in wanted.difference(&taken) {
        let least = result
            .iter_mut()
            .filter(|(m, _)| eligible(m, tp))
            .min_by_key(|(m, owned)| (owned.len(), (*m).clone()));
        if let Some((_, owned)) = least {
            owned.insert(tp.clone());
        }
    }

    // Move partitions from the most to the least loaded members until no
    // move can narrow a gap of more than one.
    loop {
        let mut order: Vec<(&String, usize)> = result.iter().map(|(m, o)| (m, o.len())).collect();
        order.sort_by_key(|(m, n)| (std::cmp::Reverse(*n), (*m).clone()));
        let mut step = None;
        'search: for (hi, hi_n) in &order {
            for (lo, lo_n) in order.iter().rev() {
                if hi_n <= &(lo_n + 1) {
                    break;
                }
                if let Some(tp) = result[*hi].iter().rev().find(|tp| eligible(lo, tp)) {
                    step = Some(((*hi).clone(), (*lo).clone(), tp.clone()));
                    break 'search;
                }
            }
        }
        let Some((hi, lo, tp)) = step else { break };
        result.get_mut(&hi).expect("member exists").remove(&tp);
        result.get_mut(&lo).expect("member exists").insert(tp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(members: &[&str], topics: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
        members.iter().map(|m| (m.to_string(), topics.iter().map(|t| t.to_string()).collect())).collect()
    }

    fn counts(a: &Assignment) -> Vec<usize> {
        a.values().map(BTreeSet::len).collect()
    }

    fn moved(before: &Assignment, after: &Assignment) -> usize {
        after
            .iter()
            .map(|(m, owned)| {
                owned.iter().filter(|tp| !before.get(m).is_some_and(|b| b.contains(*tp))).count()
            })
            .sum()
    }

    fn all_once(a: &Assignment, total: usize) {
        let mut seen = BTreeSet::new();
        for tp in a.values().flatten() {
            assert!(seen.insert(tp.clone()), "{tp:?} assigned twice");
        }
        assert_eq!(seen.len(), total);
    }

    #[test]
    fn six_partitions_three_then_four_then_three_members() {
        let parts: BTreeMap<_, _> = [("t".to_string(), 6)].into();
        let three = assign(&subs(&["a", "b", "c"], &["t"]), &parts, &Assignment::new());
        assert_eq!(counts(&three), [2, 2, 2]);
        all_once(&three, 6);

        let four = assign(&subs(&["a", "b", "c", "d"], &["t"]), &parts, &three);
        all_once(&four, 6);
        let mut c = counts(&four);
        c.sort_unstable();
        assert_eq!(c, [1, 1, 2, 2]);
        assert_eq!(moved(&three, &four), 1, "one partition moves, to the new member");

        let mut without_b = four.clone();
        without_b.remove("b");
        let after = assign(&subs(&["a", "c", "d"], &["t"]), &parts, &without_b);
        assert_eq!(counts(&after), [2, 2, 2]);
        all_once(&after, 6);
        assert_eq!(moved(&without_b, &after), four["b"].len(), "only the leaver's partitions move");
    }

    #[test]
    fn more_members_than_partitions_leaves_extras_empty() {
        let parts: BTreeMap<_, _> = [("t".to_string(), 2)].into();
        let a = assign(&subs(&["a", "b", "c"], &["t"]), &parts, &Assignment::new());
        all_once(&a, 2);
        let mut c = counts(&a);
        c.sort_unstable();
        assert_eq!(c, [0, 1, 1]);
    }

    #[test]
    fn different_subscriptions_are_respected() {
        let parts: BTreeMap<_, _> = [("x".to_string(), 4), ("y".to_string(), 2)].into();
        let mut s = subs(&["a", "b"], &["x"]);
        s.insert("c".into(), ["y".to_string()].into());
        let a = assign(&s, &parts, &Assignment::new());
        all_once(&a, 6);
        assert!(a["c"].iter().all(|(t, _)| t == "y"));
        assert!(a["a"].iter().chain(&a["b"]).all(|(t, _)| t == "x"));
        assert_eq!((a["a"].len(), a["b"].len(), a["c"].len()), (2, 2, 2));
    }

    #[test]
    fn unknown_topics_and_shrunk_topics_are_dropped() {
        let parts: BTreeMap<_, _> = [("t".to_string(), 2)].into();
        let previous: Assignment =
            [("a".to_string(), [("t".to_string(), 5), ("gone".to_string(), 0)].into())].into();
        let a = assign(&subs(&["a"], &["t", "gone"]), &parts, &previous);
        assert_eq!(a["a"], [("t".to_string(), 0), ("t".to_string(), 1)].into());
    }
}
