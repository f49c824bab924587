"""A Twisted endpoint plugin for the tests: ``testtcp:PORT`` listens like ``tcp:PORT`` and
proves that installed endpoint plugins (txacme's ``le:``, for example) are usable with -e."""

from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamServerEndpointStringParser)
class TestTCPParser:
    prefix = "testtcp"

    def parseStreamServer(self, reactor, port, interface="127.0.0.1"):
        return TCP4ServerEndpoint(reactor, int(port), interface=interface)


parser = TestTCPParser()
