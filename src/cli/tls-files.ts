// `orderer init --tls`: a self-signed CA and one certificate per replica for its API, made with the
// openssl command. For a dev or test cluster: in production, use certificates of your own CA
// (docs/operations.md, "TLS"). Private keys are written 0600 in a 0700 directory, never by openssl
// itself (whose files follow the umask): openssl prints them and writePrivateFile writes them.

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { privateDir, writePrivateFile } from "../util/private-files.ts";
import { CliError } from "./errors.ts";

/** Where `orderer init --tls` puts the files, relative to the output directory. */
export const TLS_DIR = "tls";

/** Validity of the generated certificates (825 days: what browsers and macOS accept for a leaf). */
const DEV_CERT_DAYS = 825;

export interface DevCertificates {
  /** The CA certificate: what clients are given (--ca, the clients' `ca` option). */
  readonly caFile: string;
  /** Per replica: its certificate and key, for its node file's tls. */
  readonly replicas: readonly { readonly certFile: string; readonly keyFile: string }[];
}

function openssl(args: readonly string[], input?: string): string {
  try {
    return execFileSync("openssl", args, { input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT")
      throw new CliError("FAILED", "--tls needs the openssl command (Debian: apt-get install openssl)");
    throw new CliError("FAILED", `openssl ${args[0]}: ${(e.stderr ?? e.message).trim().split("\n")[0]}`);
  }
}

/** A new P-256 private key, PEM (printed by openssl, never written by it). */
const newKey = (): string => openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);

/** subjectAltName entries for a host: an IP address or a DNS name (127.0.0.1 also as localhost). */
export function altNames(host: string): string {
  const ip = /^[0-9.]+$/.test(host);
  const names = [ip ? `IP:${host}` : `DNS:${host}`];
  if (host === "127.0.0.1") names.push("DNS:localhost");
  return names.join(",");
}

/**
 * Writes `<out>/tls/`: ca.pem and ca.key (the CA, valid DEV_CERT_DAYS), and node-<i>.pem and
 * node-<i>.key per replica, each certificate naming its replica's host (hosts[i]).
 */
export function makeDevCertificates(
  out: string,
  clusterName: string,
  hosts: readonly string[],
): DevCertificates {
  const dir = join(out, TLS_DIR);
  privateDir(dir);
  const caKeyFile = join(dir, "ca.key");
  const caFile = join(dir, "ca.pem");
  writePrivateFile(caKeyFile, newKey());
  const days = String(DEV_CERT_DAYS);
  const subject = (cn: string) => `/O=${clusterName.replace(/[/=+,\\]/g, "_")}/CN=${cn}`;
  const ca = openssl([
    "req",
    "-new",
    "-x509",
    "-key",
    caKeyFile,
    "-days",
    days,
    "-subj",
    subject("orderer dev CA"),
    "-addext",
    "basicConstraints=critical,CA:TRUE,pathlen:0",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  writeFileSync(caFile, ca);
  const replicas = hosts.map((host, i) => {
    const keyFile = join(dir, `node-${i}.key`);
    const certFile = join(dir, `node-${i}.pem`);
    const extFile = join(dir, `node-${i}.ext`);
    writePrivateFile(keyFile, newKey());
    const csr = openssl(["req", "-new", "-key", keyFile, "-subj", subject(`replica ${i}`)]);
    writeFileSync(
      extFile,
      `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n` +
        `extendedKeyUsage=serverAuth\nsubjectAltName=${altNames(host)}\n`,
    );
    try {
      const cert = openssl(
        [
          "x509",
          "-req",
          "-CA",
          caFile,
          "-CAkey",
          caKeyFile,
          "-set_serial",
          `0x${randomBytes(16).toString("hex")}`,
          "-days",
          days,
          "-extfile",
          extFile,
        ],
        csr,
      );
      writeFileSync(certFile, cert);
    } finally {
      rmSync(extFile, { force: true });
    }
    return { certFile, keyFile };
  });
  return { caFile, replicas };
}
