"""Raw dump readers. Importing this package registers every built-in source."""

from mmprep.sources import amazon2014, amazon2018, amazon2023, movielens, netflix  # noqa: F401
from mmprep.sources.base import SOURCES, SkipLog, Source, SourceFiles, get_source

__all__ = ["SOURCES", "Source", "SourceFiles", "SkipLog", "get_source"]
