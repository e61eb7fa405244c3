// better-auth's password hash (packages/better-auth/src/crypto/password.ts): scrypt with
// N = 16384, r = 16, p = 1, a 64-byte key, the password NFKC-normalized, and the salt being
// the hex text of 16 random bytes (its characters, not their decoding); stored as
// `hex(salt):hex(key)`. better-auth runs @noble/hashes' scrypt; Node's crypto.scryptSync is
// the same function, and is what this machine has.
//
// Reads a JSON array of passwords on stdin, writes a JSON array of {password, hash}.
const crypto = require("crypto");

const N = 16384, r = 16, p = 1, dkLen = 64;
const passwords = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = passwords.map((password) => {
  const salt = crypto.randomBytes(16).toString("hex");
  const key = crypto.scryptSync(password.normalize("NFKC"), salt, dkLen, {
    N, r, p, maxmem: 128 * N * r * 2,
  });
  return { password, hash: `${salt}:${key.toString("hex")}` };
});
process.stdout.write(JSON.stringify(out));
