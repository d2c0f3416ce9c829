// Unit tests from the worked examples in the spec text (p4-00 §5.5, p4-01 §11, p4-02 §3.2.2, §13, p4-03 §15).
import { strict as assert } from "node:assert";
import { test } from "node:test";
import { ED25519_TORSION_SUBGROUP, ed25519 } from "@noble/curves/ed25519";
import { fromHex, toHex } from "../src/bytes.js";
import { decodeBody, decodeItem, encode } from "../src/cbor.js";
import { P4Error } from "../src/errors.js";
import { decodeFrame, encodeFrame, StreamReader } from "../src/framing.js";
import { deviceIdDecode, deviceIdEncode, L, Point, publicKey, sign, verify } from "../src/identity.js";
import { bigintToLe, concat } from "../src/bytes.js";
import { sha512 } from "@noble/hashes/sha2";
import { parseCode, parseUri } from "../src/pairing/invite.js";
import {
  checkPeerElement, commitmentOf, deriveW, finalKeys, keySchedule, pakeElement, reduce, scalarBytes, sharedK, transcript,
  transcriptHash,
} from "../src/pairing/crypto.js";
import { derive } from "../src/rendezvous/derive.js";
import { signMessage } from "../src/rendezvous/messages.js";

const h = (s: string): Uint8Array => fromHex(s.replace(/\s+/g, ""));
const code = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    if (e instanceof P4Error) return e.code;
    throw e;
  }
  return "ok";
};

test("p4-00 §5.5 accepted CBOR bodies round-trip", () => {
  for (const b of ["a0", "a10100", "a2010002 01", "a2170018 1800", "a10120",
    "a10148 0001020304050607", "a101636162 63", "a10182f5f6", "a1011bffffffffffffffff", "a1013bffffffffffffffff",
    "a101" + "81".repeat(15) + "00"]) {
    const bytes = h(b);
    assert.equal(toHex(encode(decodeBody(bytes))), toHex(bytes));
  }
});

test("p4-00 §5.5 rejected CBOR bodies give the stated code", () => {
  const cases: [string, string][] = [
    ["", "CBOR_MALFORMED"], ["a101", "CBOR_MALFORMED"], ["a1014200", "CBOR_MALFORMED"], ["a1011c", "CBOR_MALFORMED"],
    ["a1011f", "CBOR_MALFORMED"], ["a101ff", "CBOR_MALFORMED"], ["a101f93c", "CBOR_MALFORMED"], ["a1018301", "CBOR_MALFORMED"],
    ["a1180100", "CBOR_NON_MINIMAL"], ["a1011900ff", "CBOR_NON_MINIMAL"], ["a1015800", "CBOR_NON_MINIMAL"],
    ["b8010100", "CBOR_NON_MINIMAL"], ["a202000100", "CBOR_UNSORTED_KEYS"], ["a218180017 00", "CBOR_UNSORTED_KEYS"],
    ["a201000100", "CBOR_DUPLICATE_KEY"], ["a3010002000100", "CBOR_UNSORTED_KEYS"], ["bf0100ff", "CBOR_FORBIDDEN"],
    ["a1015f4100ff", "CBOR_FORBIDDEN"], ["a101c100", "CBOR_FORBIDDEN"], ["a101f93c00", "CBOR_FORBIDDEN"],
    ["a101f7", "CBOR_FORBIDDEN"], ["a101f0", "CBOR_FORBIDDEN"], ["a12000", "CBOR_FORBIDDEN"], ["a1616100", "CBOR_FORBIDDEN"],
    ["a101" + "81".repeat(16) + "00", "CBOR_TOO_DEEP"], ["a10162c328", "CBOR_INVALID_UTF8"], ["a10162c080", "CBOR_INVALID_UTF8"],
    ["a10163eda080", "CBOR_INVALID_UTF8"], ["a1010000", "CBOR_TRAILING"], ["80", "CBOR_NOT_MAP"], ["0100", "CBOR_NOT_MAP"],
  ];
  for (const [b, want] of cases) assert.equal(code(() => decodeBody(h(b))), want, b);
  assert.equal(code(() => decodeItem(h("0100"))), "CBOR_TRAILING");
});

test("p4-01 §11 frames", () => {
  const ping = h("010200000b a1014800 01020304050607");
  assert.equal(decodeFrame(ping, "datachannel").type, 2);
  assert.equal(decodeFrame(h("01e5ff0002ffff"), "datachannel").ignorable, true);
  const rejected: [string, "tor" | "datachannel", string][] = [
    ["0102", "datachannel", "FRAME_TRUNCATED"], ["020200", "datachannel", "FRAME_TRUNCATED"],
    ["024000ffff", "datachannel", "FRAME_BAD_VERSION"], ["0140003ffc", "datachannel", "FRAME_TOO_LARGE"],
    ["01ea004000", "datachannel", "FRAME_TOO_LARGE"], ["010005 0000", "datachannel", "FRAME_RESERVED_TYPE"],
    ["0114000000", "tor", "FRAME_UNKNOWN_TYPE"], ["0140020000", "tor", "FRAME_PATH_NOT_ALLOWED"],
    ["0140020000", "datachannel", "FRAME_BAD_FLAGS"], ["0102000000", "datachannel", "CBOR_MALFORMED"],
    ["0101000006a20100026000", "tor", "CBOR_TRAILING"], ["0103000001a0", "datachannel", "MESSAGE_INVALID"],
    ["0101000009a2011a0001000002 60", "tor", "MESSAGE_INVALID"],
  ];
  for (const [f, p, want] of rejected) assert.equal(code(() => decodeFrame(h(f), p)), want, f);
  assert.equal(toHex(encodeFrame(2, 0, h("a1014800 01020304050607"), "tor")), toHex(h("010200000b a101480001020304050607")));
  assert.equal(code(() => encodeFrame(0x40, 1, h("68656c6c6f"), "tor")), "FRAME_PATH_NOT_ALLOWED");
});

test("p4-01 §11.3 stream reassembly", () => {
  const r = new StreamReader("tor");
  assert.equal(r.feed(h("010200000ba1014800")).length, 0);
  assert.equal(r.pending, 9);
  const out = r.feed(h("01020304050607 0104000000 01ea000000 0103"));
  assert.deepEqual(out.filter((f) => !f.ignorable).map((f) => f.type), [2, 4]);
  assert.equal(r.pending, 2);
  assert.equal(code(() => new StreamReader().feed(h("0140003ffc"))), "FRAME_TOO_LARGE");
});

test("p4-02 §3.2.2 device ID worked example", () => {
  const k = h("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  const id = "25NJQAM-CWEFLPM-VKL73J4-SZAHHIT-HOC4XT3-KTCGJNJ-PAINGR5-YHKENAI";
  assert.equal(deviceIdEncode(k), id);
  assert.equal(toHex(deviceIdDecode(id.toLowerCase().replace(/-/g, " "))), toHex(k));
  assert.equal(code(() => deviceIdDecode(id.replace("M-C", "N-C"))), "DEVICE_ID_CHECK_FAILED");
  assert.equal(code(() => deviceIdDecode(id.replace("25N", "15N"))), "DEVICE_ID_MALFORMED");
  assert.equal(toHex(publicKey(h("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))), toHex(k));
});

test("§3.1.1: cofactorless verification rejects what noble's cofactored verify accepts", () => {
  const seed = h("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  const msg = new Uint8Array([1, 2, 3]);
  const pub = publicKey(seed);
  verify(pub, msg, sign(seed, msg));
  // A mixed-order key A' = A + T (T of order 2... here order 8) with a signature that only the
  // cofactored equation accepts: R' = R + T', S unchanged, k recomputed — build one by brute force.
  const T8 = Point.fromHex(ED25519_TORSION_SUBGROUP[1] ?? "", true);
  const a = ed25519.utils.getExtendedPublicKey(seed).scalar;
  const A2 = Point.BASE.multiply(a).add(T8);
  const A2b = A2.toBytes();
  for (let i = 0; i < 64; i++) {
    const r = reduce(sha512(new Uint8Array([i, ...msg]))) || 1n;
    const R = Point.BASE.multiply(r);
    const k = reduce(sha512(concat(R.toBytes(), A2b, msg)));
    const s = (r + k * a) % L;
    const sig = concat(R.toBytes(), bigintToLe(s, 32));
    // [S]B − [k]A' = R − [k]T8: equals R only when k ≡ 0 mod 8.
    const strict = code(() => verify(A2b, msg, sig));
    const cofactored = ed25519.verify(sig, msg, A2b, { zip215: false });
    assert.equal(cofactored, true);
    assert.equal(strict, k % 8n === 0n ? "ok" : "SIGNATURE_INVALID");
    if (strict !== "ok") return;
  }
  assert.fail("no k with k mod 8 != 0 in 64 tries");
});

test("p4-02 §13 pairing worked example", () => {
  const password = new TextEncoder().encode("7-guitarist-revenge");
  const w = deriveW(password, "7");
  assert.equal(toHex(scalarBytes(w)), "4165763c905d178416825193ca5a7e5da02d1710c8188ab1eb1461e31acd6709");
  const enc = new TextEncoder();
  const x = reduce(sha512(enc.encode("p4 vector pairing x")));
  const y = reduce(sha512(enc.encode("p4 vector pairing y")));
  const pA = pakeElement("accepter", x, w);
  const pB = pakeElement("inviter", y, w);
  assert.equal(toHex(pA), "4999fae70d4f82e4cb623019d84b9b120c23b36137e512e91106cb6470a1f639");
  assert.equal(toHex(pB), "1a823e013c4627e4d3ae0f23a9ee378abc7e25a023156d5b7749c49ac793d0a3");
  const K = sharedK(x, checkPeerElement("accepter", pB, w));
  assert.equal(toHex(K), toHex(sharedK(y, checkPeerElement("inviter", pA, w))));
  assert.equal(toHex(K), "2acb35444e3f299ba1eb444b57020fdc9192780083b94c7ba125def8c09ea61e");
  const TT = transcript("7", pA, pB, K, w);
  const s = keySchedule(TT);
  assert.equal(toHex(s.cA), "d60b1848e10a43aef56ecef69fd45a552c1de9421ef5f97194db423d270e3c98");
  const TH = transcriptHash(TT);
  assert.equal(toHex(TH), "cdf14a6222e42e14828194b79bd94ef3df239adcce1336fd0632d611126e7dbb");
});

test("p4-02 §5 invitations", () => {
  const c = parseCode("  7-Guitarist-REVENGE\n");
  assert.equal(c.canonical, "7-guitarist-revenge");
  assert.equal(code(() => parseCode("7-guitarist-revenge\u00a0")), "PAIR_CODE_MALFORMED");
  const uri = "p4:pair?v=1&o=rvfljffcbojd4drd633ubapzlkjqdbqqfppx6wbp42zxrjbxcsienpid&s=aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq&i=2wn2mhqcu5c662gmpsnmh72liu&x=1795000000";
  const u = parseUri(uri);
  assert.equal(u.expires, 1795000000n);
  assert.equal(code(() => parseUri(uri.replace("v=1", "v=2"))), "VERSION_UNSUPPORTED");
  assert.equal(code(() => parseUri(uri.replace("&x=1795000000", ""))), "PAIR_URI_MALFORMED");
});

test("p4-03 §15 derivation and signed OFFER", () => {
  const root = h("871779acea8eadf6086db125c77037485912a6014ccd628326f462c67b6f67a4");
  const lowSeed = h("be11679ffa71852399ff796774d64b70343ede5ade5241f572f49b46701d65b5");
  const lowPub = h("6de97a323cc857f69f4b9282932316a43ec87a2a90d5db8c5d13c916299d197b");
  const highPub = h("83074d1bd70d8c076962d9c5f15c595a6c017b3c2c84344cc72b2c86e5aa0d2b");
  assert.equal(toHex(publicKey(lowSeed)), toHex(lowPub));
  const d = derive(root, lowPub, highPub, 20416n);
  assert.equal(d.myRole, "low");
  assert.equal(toHex(d.myOnionSeed), "ed995c81ddc20459104428d8a7a3c0b71140563d1bb837020d3bc6e24a158021");
  assert.equal(d.myOnionAddress, "iqdwoocyiodcp76yu3gycuwauskmzmuyzw34v5cx6wqlsab2ovdopryd");
  assert.equal(d.peerOnionAddress, "thzu7yccicqifitapeh42ckmtdnbmjhmuiz3luowwkpl55mwftfv6tid");
  assert.equal(toHex(d.myClientAuthPub), "4978632f48fcc73e1c8bdc68bd85c3e19b29f3579111218642c53437b543725b");
  assert.equal(toHex(d.peerClientAuthPub), "68137667a9e78167fda7e5048b2f806ec6d06b5880bd9711250a55245f6e8727");
  const r = signMessage("RV_OFFER", {
    epoch: 20416n, nonce: h("50ed41c07dbc95c7f1a8622593b7657d"), generation: 1n, sdp: "v=0\r\n",
    fingerprint: h("5ef3ebaaba988fd49975b99c200a4eba6f12d1b965ef4da4a3020a8be3583997"), last_rx: 41n,
    stream_nonce: h("77622200d4b3994085fdbe9a8e6c9025"),
  }, lowSeed, highPub);
  assert.ok(toHex(r.frame).startsWith("012100009ba801194fc0025050ed41c07dbc95c7f1a8622593b7657d"));
  assert.ok(toHex(r.frame).endsWith("c859a35f22d7f9f88b14b67e594dcb0d"));
  void commitmentOf; void finalKeys;
});
