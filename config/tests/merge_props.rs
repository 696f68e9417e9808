//! Property tests of the merge laws over arbitrary trees: merging with an empty source
//! changes nothing, and the result does not depend on how sources are grouped.

use std::sync::Arc;

use indexmap::IndexMap;
use proptest::prelude::*;
use rkos_config::merge::{merge, strip_replace};
use rkos_config::node::{Entry, Mark, Node, Scalar, Value};

fn mark(src: u8, line: usize) -> Mark {
    let names = ["a.yaml", "b.yaml", "c.yaml"];
    Mark::new(&Arc::from(names[src as usize % 3]), Some(line), 1)
}

fn leaf() -> impl Strategy<Value = Node> {
    (
        0u8..3,
        1usize..50,
        prop_oneof![Just(None), "[abc1]".prop_map(Some)],
        any::<bool>(),
    )
        .prop_map(|(src, line, text, quoted)| match text {
            None => Node::new(Value::Null, mark(src, line)),
            Some(t) => Node::new(Value::Scalar(Scalar { text: t, quoted }), mark(src, line)),
        })
}

/// A keyed list: maps with unique `id`s (the invariant normalisation guarantees), some
/// without an id.
fn keyed_list(inner: BoxedStrategy<Node>) -> impl Strategy<Value = Node> {
    (
        0u8..3,
        1usize..50,
        prop::collection::vec(
            (
                prop_oneof![Just(None), "[xyz]".prop_map(Some)],
                inner,
                any::<bool>(),
            ),
            0..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(src, line, raw, replace)| {
            let mut seen = Vec::new();
            let mut items = Vec::new();
            for (id, body, with_body) in raw {
                let mut m = IndexMap::new();
                if let Some(id) = id {
                    if seen.contains(&id) {
                        continue;
                    }
                    seen.push(id.clone());
                    m.insert(
                        "id".to_string(),
                        Entry {
                            key_mark: mark(src, line),
                            node: Node::new(
                                Value::Scalar(Scalar {
                                    text: id,
                                    quoted: false,
                                }),
                                mark(src, line),
                            ),
                        },
                    );
                }
                if with_body {
                    m.insert(
                        "body".to_string(),
                        Entry {
                            key_mark: mark(src, line),
                            node: body,
                        },
                    );
                }
                items.push(Node::new(Value::Map(m), mark(src, line)));
            }
            let mut n = Node::new(
                Value::Seq {
                    items,
                    key: Some("id"),
                },
                mark(src, line),
            );
            n.replace = replace;
            n
        })
}

fn tree() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(4, 40, 4, |inner| {
        let inner_b = inner.clone().boxed();
        prop_oneof![
            // Plain lists (union).
            (
                0u8..3,
                1usize..50,
                prop::collection::vec(inner.clone(), 0..4),
                any::<bool>()
            )
                .prop_map(|(src, line, items, replace)| {
                    let mut n = Node::new(Value::Seq { items, key: None }, mark(src, line));
                    n.replace = replace;
                    n
                }),
            // Maps; a key starting with `k` always holds a keyed list, as a schema would.
            (
                0u8..3,
                1usize..50,
                prop::collection::vec(("[pqr]", inner.clone()), 0..4),
                prop::collection::vec(("k[12]", keyed_list(inner_b)), 0..2),
                any::<bool>()
            )
                .prop_map(|(src, line, plain, keyed, replace)| {
                    let mut m = IndexMap::new();
                    for (k, v) in plain.into_iter().chain(keyed) {
                        m.insert(
                            k,
                            Entry {
                                key_mark: mark(src, line),
                                node: v,
                            },
                        );
                    }
                    let mut n = Node::new(Value::Map(m), mark(src, line));
                    n.replace = replace;
                    n
                }),
        ]
    })
}

/// Roots are mappings, as every source is after normalisation.
fn source() -> impl Strategy<Value = Node> {
    tree().prop_map(|n| match n.value {
        Value::Map(_) => n,
        _ => {
            let mut m = IndexMap::new();
            m.insert(
                "p".to_string(),
                Entry {
                    key_mark: n.mark.clone(),
                    node: n.clone(),
                },
            );
            Node::new(Value::Map(m), n.mark)
        }
    })
}

fn empty_source() -> Node {
    Node::new(Value::Map(IndexMap::new()), mark(2, 1))
}

fn entries(n: &Node) -> &IndexMap<String, Entry> {
    n.as_map().expect("sources are maps")
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn null_is_the_identity(x in tree()) {
        // Two nulls differ only in their (meaningless) marks.
        prop_assume!(!x.is_null());
        let null = Node::new(Value::Null, mark(0, 1));
        prop_assert_eq!(merge(x.clone(), null.clone()), x.clone());
        prop_assert_eq!(merge(null, x.clone()), x);
    }

    #[test]
    fn an_empty_source_changes_nothing(x in source()) {
        let right = merge(x.clone(), empty_source());
        prop_assert_eq!(&right, &x);
        let left = merge(empty_source(), x.clone());
        prop_assert_eq!(entries(&left), entries(&x));
    }

    #[test]
    fn grouping_does_not_matter(a in source(), b in source(), c in source()) {
        let left = merge(merge(a.clone(), b.clone()), c.clone());
        let right = merge(a, merge(b, c));
        prop_assert_eq!(&left, &right);
        let (mut l, mut r) = (left, right);
        strip_replace(&mut l);
        strip_replace(&mut r);
        prop_assert_eq!(l, r);
    }

    #[test]
    fn grouping_does_not_matter_for_any_values(a in tree(), b in tree(), c in tree()) {
        let left = merge(merge(a.clone(), b.clone()), c.clone());
        let right = merge(a, merge(b, c));
        prop_assert_eq!(left, right);
    }
}
