def test_import() -> None:
    import fnnet

    assert fnnet.__version__
