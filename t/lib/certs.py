"""Test certificates, made with the `openssl` command in a test's temporary directory (nothing
with a private key is committed). A Pki is one CA; issue() signs a certificate for 127.0.0.1."""

import os
import subprocess


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=60)


class Pki:
    def __init__(self, directory, name="test-ca"):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.ca = os.path.join(self.dir, f"{name}.pem")
        self.ca_key = os.path.join(self.dir, f"{name}.key")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                 "-subj", f"/CN={name}", cwd=self.dir)
        self._serial = 1

    def issue(self, cn, days=2):
        """-> (cert path, key path) of a certificate for cn, valid for 127.0.0.1 and localhost,
        usable by both ends of a connection."""
        key = os.path.join(self.dir, f"{self.name}-{cn}.key")
        csr = os.path.join(self.dir, f"{self.name}-{cn}.csr")
        cert = os.path.join(self.dir, f"{self.name}-{cn}.pem")
        ext = os.path.join(self.dir, f"{self.name}-{cn}.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", f"/CN={cn}", cwd=self.dir)
        self._serial += 1
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                 "-set_serial", str(self._serial), "-days", str(days), "-extfile", ext,
                 "-out", cert, cwd=self.dir)
        return cert, key
