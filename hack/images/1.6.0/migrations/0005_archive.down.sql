-- irreversible: archived authorizations would be lost
DROP TABLE authorization_archive;
