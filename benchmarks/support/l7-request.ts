// The request the L7 benchmark sends through both client sidecars: l7-pair.ts's router is written so
// that it fails routes 1-9 (several only on their last condition) and matches route 10.
export const L7_REQUEST = { path: '/bench/items/42', headers: { 'x-bench': 'yes', 'x-user': 'alice' } };
