"""The four model classes of seed 000 (neural's Hodgkin-Huxley, Alpha synapse, Oizumi, OTP).

The ode() bodies are copied from the seed unchanged; HodgkinHuxley's and Alpha's class attributes
are the values the seed's generated code shows (neural's defaults).
"""

import numpy as np
from spikeforge import Model


class HodgkinHuxley(Model):
    Default_States = dict(v=(-60.0, -80.0, 30.0), n=(0.0, 0.0, 1.0), m=(0.0, 0.0, 1.0), h=(1.0, 0.0, 1.0))
    Default_Params = dict(gNa=120.0, gK=36.0, gL=0.3, ENa=50.0, EK=-77.0, EL=-54.387)

    def ode(self, stimulus=0.0):

        alpha = np.exp(-(self.v + 55.0) / 10.0) - 1.0
        beta = 0.125 * np.exp(-(self.v + 65.0) / 80.0)
        if abs(alpha) <= 1e-7:
            self.d_n = 0.1 * (1.0 - self.n) - beta * self.n
        else:
            self.d_n = (-0.01 * (self.v + 55.0) / alpha) * (1.0 - self.n) - beta * self.n

        alpha = np.exp(-(self.v + 40.0) / 10.0) - 1.0
        beta = 4.0 * np.exp(-(self.v + 65.0) / 18.0)
        if abs(alpha) <= 1e-7:
            self.d_m = (1.0 - self.m) - beta * self.m
        else:
            self.d_m = (-0.1 * (self.v + 40.0) / alpha) * (1.0 - self.m) - beta * self.m

        alpha = 0.07 * np.exp(-(self.v + 65.0) / 20.0)
        beta = 1.0 / (np.exp(-(self.v + 35.0) / 10.0) + 1.0)
        self.d_h = alpha * (1 - self.h) - beta * self.h

        i_na = self.gNa * np.power(self.m, 3) * self.h * (self.v - self.ENa)
        i_k = self.gK * np.power(self.n, 4) * (self.v - self.EK)
        i_l = self.gL * (self.v - self.EL)

        self.d_v = stimulus - i_na - i_k - i_l


class Alpha(Model):
    Default_States = dict(s=0.0, u=0.0)
    Default_Params = dict(ar=12.5, ad=12.19, gmax=1.0)

    def ode(self, stimulus=False):
        self.d_s = self.u
        tmp = self.ar * self.ad
        self.d_u = -(self.ar + self.ad) * self.u - tmp * self.s
        if stimulus:
            self.u += tmp


class Oizumi(Model):
    Default_Inters = {"p": 0.0, "NT": 0}
    Default_States = {"N": (51.0, 0.0, 51.0), "g": (0.0, 0.0, 1000.0)}
    Default_Params = {"N0": 51, "q": 1.07, "tauO": 10, "tauN0": 100, "pmax": 0.79, "Kpre": 0.0035}

    def ode(self, input=0, f=1.0):
        """
        Arguments:
            input (bool): spike indicator.
            f (float): overall spike rate.
        """
        self.p = self.pmax * np.exp(-self.Kpre * f)
        self.d_N = (self.N0 - self.N) ** 2 / self.tauN0
        self.d_g = -self.g / self.tauO

        if input == 1:
            self.NT = self.N * self.p
            self.g += self.NT * self.q
            self.N -= self.NT
        else:
            self.NT = 0

    def get_conductance(self):
        return self.g


class OTP(Model):
    Default_States = dict(
        v=0.0, I=0.0, uh=(0.0, 0.0, 50000.0), duh=0.0, x1=(0.0, 0.0, 1.0), x2=(0.0, 0.0, 1.0), x3=(0.0, 0.0, 1000.0)
    )
    Default_Params = dict(
        bf=1.0,
        s1=1.0,
        s2=0.135,
        d1=13.0,
        c1=13.0 * 0.00145,
        a2=128.77,
        b2=87.89,
        a3=2.100,
        b3=1.200,
        k23=6089,
        nCR=1.0,
        CCR=0.075,
        ICR=117.74,
        L=0.8,
        W=45.0,
    )

    def ode(self, stimulus=0.0):
        self.d_uh = self.duh
        self.d_duh = -2 * self.W * self.L * self.duh + self.W * self.W * (stimulus - self.uh)
        self.v = self.uh + self.s2 * self.duh
        self.v = (self.v > 0) * self.v

        self.d_x1 = self.c1 * self.bf * self.v * (1.0 - self.x1) - self.d1 * self.x1
        f = np.cbrt(self.x2 * self.x2) * np.cbrt(self.x3 * self.x3)
        self.d_x2 = self.a2 * self.x1 * (1.0 - self.x2) - self.b2 * self.x2 - self.k23 * f
        self.d_x3 = self.a3 * self.x2 - self.b3 * self.x3

        self.I = self.ICR * self.x2 / (self.x2 + self.CCR)
