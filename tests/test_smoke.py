import httpx


def test_hello(server):
    response = httpx.get(server.url + "/echo?x=1")
    assert response.status_code == 200
    assert response.json()["query_string"] == "x=1"
